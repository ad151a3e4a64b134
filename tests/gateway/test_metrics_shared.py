"""Metrics shared through a directory, as ``--workers`` processes share them: each one's
scrape shows the sum of all, histograms bucket by bucket, and the totals never go back."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aifetch.gateway._metrics import Metrics
from aifetch.gateway._usage import Usage


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def _record(metrics: Metrics, calls: int, added: float, tokens: tuple[int, int]) -> None:
    for _ in range(calls):
        metrics.answered("gpt", 200, added)
        metrics.tokens.add("alice", "gpt", Usage(*tokens))
    metrics.retry("gpt", "openai")
    metrics.gap_observer("gpt")(0.002)


async def test_each_process_shows_the_sum_of_all(tmp_path: Path) -> None:
    one, two, alone = Metrics(), Metrics(), Metrics()
    one.share(tmp_path)
    two.share(tmp_path)
    _record(one, 3, 0.0002, (10, 1))
    _record(two, 5, 0.2, (20, 2))
    _record(alone, 3, 0.0002, (10, 1))
    one.close()  # its last snapshot: what a worker leaves when it exits
    two._flush()
    for metrics in (one, two):
        text = metrics.render().decode()
        assert _value(text, 'aifetch_gateway_requests_total{model="gpt",status="200"}') == 8
        sample = 'aifetch_gateway_tokens_total{caller="alice",kind="prompt",model="gpt"}'
        assert _value(text, sample) == 3 * 10 + 5 * 20
        assert (
            _value(text, 'aifetch_gateway_upstream_retries_total{model="gpt",upstream="openai"}')
            == 2
        )
        bucket = 'aifetch_gateway_added_latency_seconds_bucket{le="0.00025",model="gpt"}'
        assert _value(text, bucket) == 3  # only the fast ones
        assert _value(text, 'aifetch_gateway_added_latency_seconds_count{model="gpt"}') == 8
        total = _value(text, 'aifetch_gateway_added_latency_seconds_sum{model="gpt"}')
        assert abs(total - (3 * 0.0002 + 5 * 0.2)) < 1e-9
        assert _value(text, 'aifetch_gateway_inter_chunk_gap_seconds_count{model="gpt"}') == 2
    # A process that does not share shows its own figures only.
    text = alone.render().decode()
    assert _value(text, 'aifetch_gateway_requests_total{model="gpt",status="200"}') == 3
    two.close()


async def test_snapshots_follow_the_live_figures_and_bad_files_are_ignored(
    tmp_path: Path,
) -> None:
    one, two = Metrics(), Metrics()
    one.share(tmp_path)
    two.share(tmp_path)
    (tmp_path / "99999-stranger.json").write_bytes(b"{not json")
    (tmp_path / "99998-shape.json").write_bytes(b'{"requests": [["gpt"]]}')
    _record(one, 2, 0.001, (1, 1))
    await asyncio.sleep(1.3)  # one snapshot interval
    text = two.render().decode()
    assert _value(text, 'aifetch_gateway_requests_total{model="gpt",status="200"}') == 2
    _record(one, 1, 0.001, (1, 1))
    await asyncio.sleep(1.1)
    text = two.render().decode()
    assert _value(text, 'aifetch_gateway_requests_total{model="gpt",status="200"}') == 3
    one.close()
    two.close()
