"""One gateway process's admissions, for the tests that run two of them against one Redis
and one PostgreSQL: ``python -m tests.governance._worker '<json>'`` prints a JSON result.

The job: wait for ``start_at`` (wall clock), then admit calls one after another until the
limit refuses twice in a row with settlements flushed in between (or ``max_calls``); each
admitted call settles ``actual`` tokens and leaves a ledger row.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aifetch.gateway import GatewayError, parse_config
from aifetch.gateway.governance import Estimate, Governor, LedgerRow, Usage


async def run(job: dict[str, Any]) -> dict[str, Any]:
    config = parse_config(job["config"], env={})
    offset = job["clock_offset"]
    governor = Governor(config, clock=lambda: time.time() + offset)
    await governor.start()
    who = governor.caller("shared")
    assert who is not None
    estimate = Estimate(*job["estimate"])
    actual = Usage(*job["actual"])
    admitted = refused = in_a_row = 0
    await asyncio.sleep(max(0.0, job["start_at"] - time.time()))
    for i in range(job["max_calls"]):
        try:
            admission = await governor.admit(who, "m1", estimate, stream=False)
        except GatewayError:
            refused += 1
            in_a_row += 1
            if in_a_row >= 2:
                break
            await governor.flush()
            await asyncio.sleep(0.1)  # the other process's settlements land meanwhile
            continue
        in_a_row = 0
        admitted += 1
        governor.settle(admission, actual)
        governor.record(
            LedgerRow(
                ts=time.time(),
                request_id=f"{job['name']}-{i}",
                caller="shared",
                model="m1",
                status=200,
                duration_ms=1.0,
                prompt_tokens=actual.prompt_tokens,
                completion_tokens=actual.completion_tokens,
                cost_nano_usd=governor.cost("m1", actual),
            )
        )
        await asyncio.sleep(job["pause"])
    await governor.aclose()
    return {"admitted": admitted, "refused": refused}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
