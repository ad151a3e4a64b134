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
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

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


class _TokenCounts:
    """Prompt and completion tokens per (caller, model): one dict entry per pair, updated
    with one lookup per answer."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.values: dict[tuple[str, str], list[int]] = {}

    def add(self, caller: str, model: str, prompt: int, completion: int) -> None:
        counts = self.values.get((caller, model))
        if counts is None:
            self.values[(caller, model)] = [prompt, completion]
        else:
            counts[0] += prompt
            counts[1] += completion

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=["caller", "model", "kind"])
        for (caller, model), (prompt, completion) in self.values.items():
            family.add_metric([caller, model, "prompt"], float(prompt))
            family.add_metric([caller, model, "completion"], float(completion))
        return family


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

    def collect(self) -> Iterator[Metric]:
        for counters in (self.requests, self.tokens, self.retries, self.fallbacks):
            yield counters.family()
        for histograms in (self.added_latency, self.ttft, self.gap):
            yield histograms.family()

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
