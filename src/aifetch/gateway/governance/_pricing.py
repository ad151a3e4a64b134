"""Cost from a per-model price table (``models.<name>.price``: USD per million input,
output and cached-input tokens), in integer nano-USD (``_types.nano_usd``)."""

from __future__ import annotations

from collections.abc import Mapping

from ._config import PriceConfig
from ._types import Estimate, Usage

__all__ = ["Price", "PriceTable"]

# USD per million tokens → nano-USD per token: x * 1e9 / 1e6.
_PER_MILLION_TO_NANO = 1000.0


class Price:
    """One model's prices in nano-USD per token."""

    __slots__ = ("cached", "input", "output")

    def __init__(self, config: PriceConfig) -> None:
        self.input = config.input * _PER_MILLION_TO_NANO
        self.output = config.output * _PER_MILLION_TO_NANO
        cached = config.input if config.cached_input is None else config.cached_input
        self.cached = cached * _PER_MILLION_TO_NANO

    def cost(self, usage: Usage) -> int:
        """What ``usage`` cost, in nano-USD. Cached prompt tokens are priced at the
        cached-input rate, the rest of the prompt at the input rate."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return round(
            (usage.prompt_tokens - cached) * self.input
            + cached * self.cached
            + usage.completion_tokens * self.output
        )


class PriceTable:
    """Prices per public model name; a model without a price costs 0 (so a budget does
    not count it: give every model a caller with a budget can use a price)."""

    def __init__(self, prices: Mapping[str, PriceConfig | None]) -> None:
        self._prices = {model: Price(p) for model, p in prices.items() if p is not None}

    def __contains__(self, model: str) -> bool:
        return model in self._prices

    def price(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, model: str, usage: Usage) -> int:
        """What ``usage`` cost on ``model``, in nano-USD (``Price.cost``)."""
        price = self._prices.get(model)
        return 0 if price is None else price.cost(usage)

    def estimate(self, model: str, estimate: Estimate) -> int:
        """The most a call with this estimate may cost (no cache discount assumed)."""
        price = self._prices.get(model)
        if price is None:
            return 0
        return round(estimate.prompt_tokens * price.input + estimate.output_tokens * price.output)
