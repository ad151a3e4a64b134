"""Governance counters for Prometheus, as one collector the gateway registers in its own
registry (``app.metrics.registry.register(governor.metrics)``).

Updates are plain integer additions on the request path; families are built on scrape.
Labels are bounded: ``kind`` is one of four limit kinds, ``action`` one of two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GovernanceMetrics"]

_KINDS = {"r": "requests", "t": "tokens", "s": "streams", "b": "budget"}


class GovernanceMetrics(Collector):
    def __init__(self) -> None:
        self.refusals = dict.fromkeys(_KINDS, 0)
        # Admissions decided without the state store: let through on local counters
        # (on_state_error: open) or refused with 503 (closed).
        self.state_local = 0
        self.state_refused = 0
        self.state_outages = 0
        # Gauges read on scrape, so they need nothing on the request path.
        self.state_up: Callable[[], bool] = lambda: True
        self.keys_active: Callable[[], int] = lambda: 0
        self.ledger_written: Callable[[], int] = lambda: 0
        self.ledger_dropped: Callable[[], int] = lambda: 0
        self.ledger_buffered: Callable[[], int] = lambda: 0
        self.settle_dropped: Callable[[], int] = lambda: 0

    def refused(self, kind: str) -> None:
        self.refusals[kind] += 1

    def collect(self) -> Iterator[Metric]:
        refusals = CounterMetricFamily(
            "aifetch_gateway_limit_refusals",
            "Calls refused with 429 by a limit, by kind.",
            labels=["kind"],
        )
        for kind, count in self.refusals.items():
            refusals.add_metric([_KINDS[kind]], float(count))
        yield refusals
        state = CounterMetricFamily(
            "aifetch_gateway_state_unavailable",
            "Admissions decided while the shared state store was unreachable.",
            labels=["action"],
        )
        state.add_metric(["admitted_locally"], float(self.state_local))
        state.add_metric(["refused"], float(self.state_refused))
        yield state
        yield CounterMetricFamily(
            "aifetch_gateway_state_outages",
            "Times the shared state store became unreachable.",
            value=float(self.state_outages),
        )
        yield GaugeMetricFamily(
            "aifetch_gateway_state_up",
            "1 when the shared state store answers (always 1 for memory state).",
            value=1.0 if self.state_up() else 0.0,
        )
        yield CounterMetricFamily(
            "aifetch_gateway_settlements_dropped",
            "Settlements dropped while the state store was away (their buffer was full).",
            value=float(self.settle_dropped()),
        )
        yield GaugeMetricFamily(
            "aifetch_gateway_virtual_keys", "Active virtual keys.", value=self.keys_active()
        )
        rows = CounterMetricFamily(
            "aifetch_gateway_ledger_rows", "Ledger rows, by outcome.", labels=["outcome"]
        )
        rows.add_metric(["written"], float(self.ledger_written()))
        rows.add_metric(["dropped"], float(self.ledger_dropped()))
        yield rows
        yield GaugeMetricFamily(
            "aifetch_gateway_ledger_buffered",
            "Ledger rows waiting to be written.",
            value=self.ledger_buffered(),
        )
