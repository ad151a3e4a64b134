"""Cost from a per-model price table (``models.<name>.price``: USD per million input,
output and cached-input tokens), in integer nano-USD (``_types.nano_usd``)."""

from __future__ import annotations

from collections.abc import Mapping

from ._config import PriceConfig
from ._types import Estimate, Usage

__all__ = ["PriceTable"]

# USD per million tokens → nano-USD per token: x * 1e9 / 1e6.
_PER_MILLION_TO_NANO = 1000.0


class _Price:
    __slots__ = ("cached", "input", "output")

    def __init__(self, config: PriceConfig) -> None:
        self.input = config.input * _PER_MILLION_TO_NANO
        self.output = config.output * _PER_MILLION_TO_NANO
        cached = config.input if config.cached_input is None else config.cached_input
        self.cached = cached * _PER_MILLION_TO_NANO


class PriceTable:
    """Prices per public model name; a model without a price costs 0 (so a budget does
    not count it: give every model a caller with a budget can use a price)."""

    def __init__(self, prices: Mapping[str, PriceConfig | None]) -> None:
        self._prices = {model: _Price(p) for model, p in prices.items() if p is not None}

    def __contains__(self, model: str) -> bool:
        return model in self._prices

    def cost(self, model: str, usage: Usage) -> int:
        """What ``usage`` cost on ``model``, in nano-USD. Cached prompt tokens are priced
        at the cached-input rate, the rest of the prompt at the input rate."""
        price = self._prices.get(model)
        if price is None:
            return 0
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return round(
            (usage.prompt_tokens - cached) * price.input
            + cached * price.cached
            + usage.completion_tokens * price.output
        )

    def estimate(self, model: str, estimate: Estimate) -> int:
        """The most a call with this estimate may cost (no cache discount assumed)."""
        price = self._prices.get(model)
        if price is None:
            return 0
        return round(estimate.prompt_tokens * price.input + estimate.output_tokens * price.output)
