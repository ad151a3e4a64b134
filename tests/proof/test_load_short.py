"""The load run, short: 200 concurrent streams through a real ``aifetch serve`` process
for ~10 s, every stream checked byte for byte against the upstream's own answer.

The long run (1,000 streams for 60 s) is ``bench/load_gateway.py``. Assertions here are
about correctness and leaks, not speed: a shared 2-core CI machine may run it slowly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ._load_support import RunReport, Services, measured_run, raise_fd_limit, services

STREAMS = 200
MB = 1024 * 1024

pytestmark = pytest.mark.slow  # ~20 s: a 10 s run of 200 streams, with start-up and settling


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    raise_fd_limit(4096)
    with services(
        tmp_path_factory.mktemp("load"), chunks=30, chunk_delay=0.05, max_connections=STREAMS + 50
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def report(running: Services) -> RunReport:
    # One run shared by the assertions below; its own loop, so the module-scoped
    # fixture does not depend on any test's loop.
    return asyncio.run(measured_run(running, streams=STREAMS, duration=10.0, settle=3.0))


def test_every_stream_is_byte_exact_and_none_failed(report: RunReport) -> None:
    load = report.load
    assert load.error_count == 0, load.first_errors
    # Each of the 200 workers finished at least its first stream, and every completed
    # stream matched the upstream's bytes (a mismatch is counted as an error above).
    assert load.streams >= STREAMS
    assert load.chunks > 0
    assert load.bytes > 0


def test_the_load_was_held_at_full_concurrency(report: RunReport) -> None:
    assert report.load.peak_open == STREAMS
    assert report.load.min_open_held == STREAMS


def test_gateway_counted_only_successes(report: RunReport) -> None:
    # Its own /metrics: every stream it answered was a 200 (warm-up included).
    assert set(report.statuses) == {"200"}
    assert report.statuses["200"] >= report.load.streams


def test_no_connection_is_left_open(report: RunReport) -> None:
    # Caller side: every socket the gateway accepted was closed with its stream.
    assert report.tcp_after.caller_side == 0, report.tcp_after
    # Upstream side: at most one pooled keep-alive connection per stream slot.
    assert report.tcp_after.upstream_side <= STREAMS + 50, report.tcp_after


def test_memory_is_bounded_and_comes_back(report: RunReport) -> None:
    # Generous bounds (a CI machine's allocator may differ): 200 open streams cost a few
    # MB here (~30 KB each), the gateway idles near 50 MB.
    assert report.rss_peak < 300 * MB
    assert report.per_stream_bytes < 512 * 1024
    # No growth with streams served while the number open stays flat ...
    assert report.rss_steady[1] - report.rss_steady[0] < 16 * MB
    # ... and none after the load ended: back near the idle figure (the allocator keeps
    # some freed memory, so "near" is generous).
    assert report.rss_after <= report.rss_peak
    assert report.rss_after - report.rss_start < 32 * MB
