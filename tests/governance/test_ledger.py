"""The usage ledger in SQLite and PostgreSQL: batched writes from two writers, exact
reports through `aifetch usage`, a bounded buffer, a flush on close, a time index."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifetch.gateway._cli import main
from aifetch.gateway.governance import LedgerRow, Usage
from aifetch.gateway.governance._ledger import Ledger, open_database
from tests.governance.conftest import MODELS, make_config, running


def _row(i: int, caller: str, model: str, *, ts: float | None = None, **fields: Any) -> LedgerRow:
    return LedgerRow(
        ts=time.time() if ts is None else ts,
        request_id=f"req-{caller}-{i}",
        caller=caller,
        key_name=fields.pop("key_name", None),
        model=model,
        upstream="mock",
        status=fields.pop("status", 200),
        duration_ms=12.5,
        ttft_ms=3.25,
        stream=bool(i % 2),
        **fields,
    )


def _write_config(path: Path, ledger_url: str) -> str:
    raw = {"upstreams": {"mock": {"kind": "mock"}}, "models": MODELS, "ledger": ledger_url}
    path.write_text(yaml.safe_dump(raw))
    return str(path)


async def _two_writers(ledger_url: str) -> dict[str, dict[str, int]]:
    """Two governors (two gateways) write rows for calls; returns what each caller used."""
    config = make_config(ledger=ledger_url, governance={"ledger_batch": 7})
    rng = random.Random(7)
    expected: dict[str, dict[str, int]] = {}
    async with running(config) as first, running(config) as second:
        for i in range(120):
            gov = first if i % 2 else second
            caller = rng.choice(["alpha", "beta", "gamma"])
            model = rng.choice(["m1", "m2", "free"])
            usage = Usage(
                prompt_tokens=rng.randint(1, 5000),
                completion_tokens=rng.randint(0, 900),
                cached_tokens=rng.randint(0, 1),
                reasoning_tokens=rng.randint(0, 50),
            )
            cost = gov.cost(model, usage)
            status = 200 if rng.random() < 0.9 else 502
            gov.record(
                _row(
                    i,
                    caller,
                    model,
                    status=status,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cached_tokens=usage.cached_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                    cost_nano_usd=cost,
                    error=None if status == 200 else "upstream_unreachable",
                )
            )
            sums = expected.setdefault(caller, dict.fromkeys(("calls", "p", "c", "cost", "err"), 0))
            sums["calls"] += 1
            sums["p"] += usage.prompt_tokens
            sums["c"] += usage.completion_tokens
            sums["cost"] += cost
            sums["err"] += status != 200
            if i % 25 == 0:
                await asyncio.sleep(0.01)  # let the writers run meanwhile
        # An old row, outside --since.
        first.record(_row(999, "alpha", "m1", ts=time.time() - 3 * 86400, prompt_tokens=10**6))
    return expected


def test_two_writers_and_an_exact_report(
    ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = asyncio.run(_two_writers(ledger_url))
    config = _write_config(tmp_path / "gw.yaml", ledger_url)
    assert main(["usage", "--config", config, "--since", "24h", "--format", "json"]) == 0
    report = {line["caller"]: line for line in json.loads(capsys.readouterr().out)}
    assert set(report) == set(expected)
    for caller, sums in expected.items():
        line = report[caller]
        assert line["calls"] == sums["calls"]
        assert line["prompt_tokens"] == sums["p"]
        assert line["completion_tokens"] == sums["c"]
        assert line["errors"] == sums["err"]
        assert line["cost_usd"] == round(sums["cost"] / 1e9, 9)
    # By model, as a table: its TOTAL row adds up to the same calls.
    assert main(["usage", "--config", config, "--by", "model"]) == 0
    total = capsys.readouterr().out.splitlines()[-1].split()
    assert total[:2] == ["TOTAL", str(sum(s["calls"] for s in expected.values()))]
    # A wider window takes in the old row.
    assert main(["usage", "--config", config, "--since", "7d", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    alpha = next(r for r in rows if r.startswith("alpha,"))
    assert alpha.split(",")[1] == str(expected["alpha"]["calls"] + 1)


async def test_every_column_round_trips(ledger_url: str) -> None:
    async with running(make_config(ledger=ledger_url)) as gov:
        gov.record(
            _row(
                1,
                "c",
                "m2",
                key_name="k",
                prompt_tokens=11,
                completion_tokens=22,
                cached_tokens=3,
                reasoning_tokens=4,
                cost_nano_usd=5,
                error="upstream_timeout",
                status=504,
            )
        )
        await gov.flush()
        assert gov.db is not None
        (by_key,) = await gov.db.usage(0, "key")
    assert (by_key.name, by_key.calls, by_key.errors) == ("k", 1, 1)
    assert (by_key.prompt_tokens, by_key.completion_tokens) == (11, 22)
    assert (by_key.cached_tokens, by_key.reasoning_tokens, by_key.cost_nano_usd) == (3, 4, 5)


async def test_a_full_buffer_drops_and_counts(ledger_url: str) -> None:
    config = make_config(ledger=ledger_url, governance={"ledger_buffer": 5, "ledger_batch": 100})
    async with running(config) as gov:
        for i in range(20):  # no await in between: the writer cannot run
            gov.record(_row(i, "c", "m1"))
        assert gov.ledger is not None
        assert gov.ledger.dropped == 15
        families = {m.name: m for m in gov.metrics.collect()}
        dropped = [
            s
            for s in families["aifetch_gateway_ledger_rows"].samples
            if s.labels["outcome"] == "dropped"
        ]
        assert dropped[0].value == 15
    db = open_database(ledger_url)
    await db.connect()
    try:
        (line,) = await db.usage(0, "caller")
    finally:
        await db.close()
    assert line.calls == 5


async def test_a_graceful_close_writes_everything(ledger_url: str) -> None:
    # A long interval and a large batch: only the close can have written these.
    config = make_config(
        ledger=ledger_url, governance={"ledger_interval": 3600, "ledger_batch": 10_000}
    )
    async with running(config) as gov:
        for i in range(2500):
            gov.record(_row(i, "c", "m1", prompt_tokens=1))
        assert gov.ledger is not None
        assert gov.ledger.written == 0
    db = open_database(ledger_url)
    await db.connect()
    try:
        (line,) = await db.usage(0, "caller")
    finally:
        await db.close()
    assert (line.calls, line.prompt_tokens) == (2500, 2500)


async def test_a_failed_write_keeps_its_rows(sqlite_url: str, tmp_path: Path) -> None:
    db = open_database(sqlite_url)
    await db.connect()
    ledger = Ledger(db, capacity=100, batch=10, interval=3600)
    ledger.record(_row(1, "c", "m1"))
    await db.close()  # the database goes away
    assert not await ledger.flush()
    assert ledger.buffered == 1
    db2 = open_database(sqlite_url)
    await db2.connect()
    ledger.db = db2
    await ledger.aclose()
    (line,) = await db2.usage(0, "caller")
    await db2.close()
    assert line.calls == 1


async def test_reports_use_the_time_index(ledger_url: str) -> None:
    db = open_database(ledger_url)
    await db.connect()
    try:
        plan = await db.explain_usage(time.time() - 86400, "caller")
    finally:
        await db.close()
    assert "aifetch_ledger_ts" in plan
