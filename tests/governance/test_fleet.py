"""Two gateway processes sharing one Redis and one PostgreSQL enforce one limit together,
and the ledger has every call of both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifetch.gateway._cli import main
from tests.governance.conftest import MODELS

ROOT = Path(__file__).resolve().parents[2]
_TIMEOUT = 60


def _mid_minute_offset() -> float:
    # Both processes run on a clock 5 s into a UTC minute (moving with real time), so a
    # per-minute count is not split by the minute's turn.
    real = time.time()
    return (real // 60) * 60 + 5 - real


def _run_two(
    state: str, prefix: str, ledger: str | None, limits: dict[str, Any], **job: Any
) -> list[dict[str, Any]]:
    raw: dict[str, Any] = {
        "upstreams": {"mock": {"kind": "mock"}},
        "models": MODELS,
        "state": state,
        "governance": {"prefix": prefix, "settle_interval": 0.02},
        "callers": [{"name": "shared", "key": "k", "limits": limits}],
    }
    if ledger is not None:
        raw["ledger"] = ledger
    base = {
        "config": raw,
        "clock_offset": _mid_minute_offset(),
        "start_at": time.time() + 3.0,
        "max_calls": 1000,
        "pause": 0.001,
        **job,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.governance._worker", json.dumps({**base, "name": name})],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=_TIMEOUT)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_two_processes_share_one_rpm_limit(redis_url: str, redis_prefix: str) -> None:
    results = _run_two(redis_url, redis_prefix, None, {"rpm": 60}, estimate=[1, 1], actual=[1, 1])
    assert all(r["admitted"] > 0 for r in results), results  # both took part
    assert sum(r["admitted"] for r in results) == 60


def test_two_processes_share_one_tpm_limit_and_one_ledger(
    redis_url: str,
    redis_prefix: str,
    pg_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "gw.yaml"
    raw = {"upstreams": {"mock": {"kind": "mock"}}, "models": MODELS, "ledger": pg_url}
    config.write_text(yaml.safe_dump(raw))
    assert main(["ledger", "migrate", "--config", str(config)]) == 0
    limit, estimate, actual = 10_000, 300, 150
    results = _run_two(
        redis_url,
        redis_prefix,
        pg_url,
        {"tpm": limit},
        estimate=[100, 200],
        actual=[100, 50],
        pause=0.005,
    )
    admitted = sum(r["admitted"] for r in results)
    assert all(r["admitted"] > 0 for r in results), results
    # The last call needs room for its whole estimate: (k - 1) * actual + estimate <= limit.
    most = (limit - estimate) // actual + 1
    # ±1 per process: the other's call may still hold its reservation when one stops.
    assert most - 2 <= admitted <= most, results
    # Every admitted call of both processes is in the ledger, once.
    capsys.readouterr()
    assert main(["usage", "--config", str(config), "--format", "json"]) == 0
    (line,) = json.loads(capsys.readouterr().out)
    assert line["caller"] == "shared"
    assert line["calls"] == admitted
    assert line["prompt_tokens"] == 100 * admitted
    assert line["completion_tokens"] == 50 * admitted
    # m1: 1 USD per million in, 2 per million out.
    assert line["cost_usd"] == pytest.approx(admitted * (100 * 1 + 50 * 2) / 1e6)
