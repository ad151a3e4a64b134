"""Prometheus metrics, one ``CollectorRegistry`` per app (two apps in one process, or an
app mounted in a host that has its own metrics, never collide).

Observations are plain dict and list updates (a ``bisect`` into fixed bucket bounds and
two additions); the Prometheus families are built only when ``/metrics`` is scraped, by a
custom collector. prometheus-client's own ``Histogram.observe`` takes a lock and walks the
buckets in Python, which cost several microseconds per call here, and the relay observes
the inter-chunk gap on every upstream read.

Labels are bounded: ``model`` is a configured public name, ``caller`` a configured caller
name (``""`` without callers), ``upstream`` a configured upstream name. No key, URL or
request content is ever a label.

With ``aifetch serve --workers N`` each worker counts for itself, and a scrape reaches one
worker at random; ``share(directory)`` makes every worker's ``/metrics`` show the sum of
all of them. Each worker writes a snapshot of its figures to ``directory/<pid>-<id>.json``
once a second (and when it closes), and a scrape adds the other workers' latest snapshots
to its own live figures (so another worker's share is at most about a second old). This
is what prometheus-client's multiprocess mode does, at the scrape rather than on every
observation: that mode writes each observation to a memory-mapped file under a lock,
which would cost the relay's per-read observation several microseconds. The observation
path here is the same with or without sharing. A worker that exits leaves its last
snapshot in place, so the totals never go back (Prometheus counters must not).
"""

from __future__ import annotations

import asyncio
import logging
import os
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ._usage import Usage

__all__ = ["Metrics"]

log = logging.getLogger("aifetch.gateway")

# Seconds between two snapshots of a worker's figures (see share()).
SHARE_INTERVAL = 1.0
# A snapshot: each figure set's ``dump()`` by its key (see Metrics._sets).
_Snapshot = dict[str, list[list[Any]]]

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_GAP_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


class _Histogram:
    """Bucket counts for one label set; ``counts[-1]`` is the +Inf bucket."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "le" (less than or equal): bisect_left finds the first
        # bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(float(bound)), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


class _HistogramSet:
    def __init__(self, name: str, doc: str, labels: list[str], bounds: Sequence[float]) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.series: dict[tuple[str, ...], _Histogram] = {}

    def get(self, *labels: str) -> _Histogram:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = _Histogram(self.bounds)
        return series

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, series in self.series.items():
            family.add_metric(list(labels), series.cumulative(), series.total)
        return family

    def dump(self) -> list[list[Any]]:
        return [[list(labels), s.counts, s.total] for labels, s in self.series.items()]

    def merged(self, dumps: Sequence[list[list[Any]]]) -> _HistogramSet:
        """A copy with the series of ``dumps`` (other workers' ``dump()``) added in."""
        out = _HistogramSet(self.name, self.doc, self.labels, self.bounds)
        for rows in (self.dump(), *dumps):
            for labels, counts, total in rows:
                series = out.get(*labels)
                if len(counts) == len(series.counts):
                    series.counts = [a + b for a, b in zip(series.counts, counts, strict=True)]
                    series.total += total
        return out


class _CounterSet:
    def __init__(self, name: str, doc: str, labels: list[str]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        # Label values are kept as given (a status stays an int) and made text on scrape.
        self.values: dict[tuple[str | int, ...], float] = {}

    def add(self, labels: tuple[str | int, ...], amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in self.values.items():
            family.add_metric([str(label) for label in labels], value)
        return family

    def dump(self) -> list[list[Any]]:
        return [[*labels, value] for labels, value in self.values.items()]

    def merged(self, dumps: Sequence[list[list[Any]]]) -> _CounterSet:
        out = _CounterSet(self.name, self.doc, self.labels)
        for rows in (self.dump(), *dumps):
            for row in rows:
                out.add(tuple(row[:-1]), row[-1])
        return out


_TOKEN_KINDS = ("prompt", "completion", "cached", "reasoning")


class _TokenCounts:
    """Tokens per (caller, model) and kind (``cached`` is part of ``prompt``, ``reasoning``
    of ``completion``): one dict entry per pair, updated with one lookup per answer."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.values: dict[tuple[str, str], list[int]] = {}

    def add(self, caller: str, model: str, usage: Usage) -> None:
        kept = self.values.get((caller, model))
        if kept is None:
            self.values[(caller, model)] = [
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
                usage.reasoning_tokens,
            ]
        else:  # once per answer: no loop, no list made
            kept[0] += usage.prompt_tokens
            kept[1] += usage.completion_tokens
            kept[2] += usage.cached_tokens
            kept[3] += usage.reasoning_tokens

    def add_counts(self, caller: str, model: str, counts: list[int]) -> None:
        kept = self.values.get((caller, model))
        if kept is None:
            self.values[(caller, model)] = list(counts)
        else:
            for i, count in enumerate(counts):
                kept[i] += count

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=["caller", "model", "kind"])
        for (caller, model), counts in self.values.items():
            for kind, count in zip(_TOKEN_KINDS, counts, strict=False):
                family.add_metric([caller, model, kind], float(count))
        return family

    def dump(self) -> list[list[Any]]:
        return [[caller, model, *counts] for (caller, model), counts in self.values.items()]

    def merged(self, dumps: Sequence[list[list[Any]]]) -> _TokenCounts:
        out = _TokenCounts(self.name, self.doc)
        for rows in (self.dump(), *dumps):
            for caller, model, *counts in rows:
                out.add_counts(caller, model, counts)
        return out


class Metrics(Collector):
    """The gateway's counters and histograms, and their collector."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.requests = _CounterSet(
            "aifetch_gateway_requests",
            "Requests answered, by public model and status.",
            ["model", "status"],
        )
        self.tokens = _TokenCounts("aifetch_gateway_tokens", "Tokens reported by upstreams.")
        self.retries = _CounterSet(
            "aifetch_gateway_upstream_retries", "Upstream attempts repeated.", ["model", "upstream"]
        )
        self.fallbacks = _CounterSet(
            "aifetch_gateway_fallbacks", "Calls handed to a model's next target.", ["model"]
        )
        self.added_latency = _HistogramSet(
            "aifetch_gateway_added_latency_seconds",
            "Time spent in the gateway itself (to response headers, minus waiting on upstreams).",
            ["model"],
            _LATENCY_BUCKETS,
        )
        self.ttft = _HistogramSet(
            "aifetch_gateway_time_to_first_token_seconds",
            "From request arrival to the first content event of a stream.",
            ["model"],
            _TTFT_BUCKETS,
        )
        self.gap = _HistogramSet(
            "aifetch_gateway_inter_chunk_gap_seconds",
            "Gap between two upstream reads of a stream.",
            ["model"],
            _GAP_BUCKETS,
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # Set by share(): the directory of the workers' snapshots, and the snapshot timer.
    _shared: Path | None = None
    _own = ""
    _flusher: asyncio.TimerHandle | None = None

    def _sets(self) -> dict[str, _CounterSet | _TokenCounts | _HistogramSet]:
        """Every figure set by its snapshot key, in the order ``collect`` yields them."""
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "added_latency": self.added_latency,
            "ttft": self.ttft,
            "gap": self.gap,
        }

    def collect(self) -> Iterator[Metric]:
        peers = self._peer_dumps() if self._shared is not None else []
        for key, figures in self._sets().items():
            for name, peer in peers:
                rows = peer.get(key)
                if rows is None:
                    continue
                try:
                    figures = figures.merged([rows])
                except (TypeError, ValueError):
                    self._ignore(name)
            yield figures.family()

    # ------------------------------------------------------------ across workers

    def share(self, directory: str | os.PathLike[str]) -> None:
        """Show every worker's figures at this one's ``/metrics``: write this process's
        snapshot to ``directory`` every ``SHARE_INTERVAL`` seconds, and add the other
        snapshots found there to each scrape. Call it on the worker's running loop."""
        self._shared = Path(directory)
        self._own = f"{os.getpid()}-{id(self):x}.json"
        self._ignored: set[str] = set()  # files that are not snapshots, warned about once
        self._flusher = asyncio.get_running_loop().call_later(SHARE_INTERVAL, self._tick)

    def close(self) -> None:
        """Write the last snapshot (a worker's final figures stay in the totals)."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._shared is not None:
            self._flush()

    def _tick(self) -> None:
        self._flush()
        self._flusher = asyncio.get_running_loop().call_later(SHARE_INTERVAL, self._tick)

    def _flush(self) -> None:
        assert self._shared is not None
        snapshot = {key: figures.dump() for key, figures in self._sets().items()}
        path = self._shared / self._own
        partial = path.with_suffix(".tmp")
        try:
            # A few kilobytes, once a second: written on the loop. The rename makes it
            # appear whole to a reader.
            partial.write_bytes(msgspec.json.encode(snapshot))
            os.replace(partial, path)
        except OSError as exc:
            log.warning("could not write the metrics snapshot %s: %s", path, exc.strerror)

    def _peer_dumps(self) -> list[tuple[str, _Snapshot]]:
        """The other processes' latest snapshots, by file name."""
        assert self._shared is not None
        dumps = []
        try:
            paths = [p for p in self._shared.glob("*.json") if p.name != self._own]
        except OSError:
            return []
        for path in paths:
            try:
                dumps.append((path.name, msgspec.json.decode(path.read_bytes(), type=_Snapshot)))
            except OSError:
                continue  # gone meanwhile
            except msgspec.DecodeError:
                self._ignore(path.name)
        return dumps

    def _ignore(self, name: str) -> None:
        if name not in self._ignored:
            self._ignored.add(name)
            log.warning("ignored %s in %s: not a metrics snapshot", name, self._shared)

    def request(self, model: str, status: int) -> None:
        self.requests.add((model, status))

    def added(self, model: str, seconds: float) -> None:
        self.added_latency.get(model).observe(seconds)

    def answered(self, model: str, status: int, added: float) -> None:
        """``request`` and ``added`` in one call, for the non-stream path."""
        self.requests.add((model, status))
        series = self.added_latency.series.get((model,)) or self.added_latency.get(model)
        series.observe(added)

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.get(model).observe(seconds)

    def gap_observer(self, model: str) -> Callable[[float], None]:
        """``observe`` bound to ``model``, for the relay's per-read call."""
        return self.gap.get(model).observe

    def retry(self, model: str, upstream: str) -> None:
        self.retries.add((model, upstream))

    def fallback(self, model: str) -> None:
        self.fallbacks.add((model,))

    def render(self) -> bytes:
        return generate_latest(self.registry)
