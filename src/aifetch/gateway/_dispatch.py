"""The end of the pipe chain: one call against its model's targets, up to the commit point.

Each target is tried up to ``retry.attempts`` times (tries in all, the first included),
then the call goes to the next target (fallback). Waits between tries are the core's
retry timing (``aifetch._retry_timing``): what the upstream asked for (``retry-after-ms``,
``Retry-After``, the exhausted ``x-ratelimit-reset-*``) without jitter, else exponential
backoff with full jitter. A wait longer than ``retry.max_server_wait`` is not waited for:
the next target is tried, or the failure passed on. How one attempt reaches its target
depends on the upstream's kind (``_kinds``: each target is a ``Leg``, made once); a call
pinned to one upstream (``ctx.pin``: a Responses call continuing a response made there)
tries only the targets on it.
"""

from __future__ import annotations

import random
import time

from aifetch._retry_timing import backoff_delay

from . import _codes as codes
from ._attempt import stopped
from ._call import CALL_ROUTES, USAGE_ROUTES, Call, Reply
from ._codes import model_not_found
from ._config import ModelConfig, RetryConfig
from ._context import RequestContext
from ._failure import Failure
from ._kinds import Leg, legs_of
from ._metrics import Metrics
from ._parse import patch_body
from ._upstream import Upstream

__all__ = ["Dispatcher"]


class Dispatcher:
    def __init__(
        self, upstreams: dict[str, Upstream], models: dict[str, ModelConfig], metrics: Metrics
    ) -> None:
        self.upstreams = upstreams
        self.models = models
        self.metrics = metrics
        self.legs = {name: legs_of(model, upstreams) for name, model in models.items()}

    async def dispatch(self, call: Call, ctx: RequestContext) -> Reply:
        """``call`` (made by the gateway or by a pipe) as part of the request ``ctx``."""
        flight = ctx.flight
        assert flight is not None  # the model call stage makes it before the chain runs
        model = self.models.get(call.model)
        if model is None:  # the caller's name, or one a pipe mapped it to, is not configured
            raise model_not_found(call.model)
        # A call on the caller's behalf uses only the caller's models; a call a pipe makes
        # for the gateway itself (caller None) is the operator's.
        who = ctx.caller
        if who is not None and call.caller == who.name and not who.may_use(call.model):
            raise codes.MODEL_NOT_ALLOWED(
                f"This key may not use the model '{call.model}'.", param="model"
            )
        flight.drain = model.on_disconnect == "drain"
        if call.route not in CALL_ROUTES:
            raise codes.PIPE_ERROR(f"a gateway pipe made a call to an unknown route {call.route}")
        raw = call.raw_body()
        asks_usage = call.stream and call.route in USAGE_ROUTES
        legs = self.legs[call.model]
        if ctx.pin is not None:
            legs = _pinned(legs, ctx.pin)
        started = time.perf_counter()
        failure: Failure | None = None
        retries = fallbacks = 0
        for index, leg in enumerate(legs):
            if index:
                fallbacks += 1
                self.metrics.fallback(call.model)
            upstream = leg.upstream
            upstream_model = leg.model or call.model
            body = patch_body(raw, call.fields, upstream_model, asks_usage)
            for n in range(model.retry.attempts):
                if n:
                    retries += 1
                    self.metrics.retry(call.model, upstream.name)
                outcome = await leg.send(upstream, call, body, ctx)
                if isinstance(outcome, Reply):
                    if outcome.source is not None:
                        flight.opened_stream(outcome.source)
                    outcome.upstream, outcome.upstream_model = upstream.name, upstream_model
                    outcome.retries, outcome.fallbacks = retries, fallbacks
                    outcome.upstream_time = time.perf_counter() - started
                    return outcome
                failure = outcome
                delay = _wait(model.retry, n, failure)
                if delay is None:
                    break
                if not await flight.pause(delay):
                    raise stopped(flight)
        assert failure is not None
        if failure.body is None:
            raise failure.error()
        # Every target failed with an HTTP error: the last one is passed on as it came.
        reply = Reply(failure.answer_status, failure.headers, failure.body)
        reply.retries, reply.fallbacks = retries, fallbacks
        reply.upstream_time = time.perf_counter() - started
        return reply


def _pinned(legs: tuple[Leg, ...], upstream: str) -> tuple[Leg, ...]:
    """The targets on ``upstream``; all of them when the model has none there (the
    upstream asked then says whether it knows the response)."""
    return tuple(leg for leg in legs if leg.upstream.name == upstream) or legs


def _wait(retry: RetryConfig, n: int, failure: Failure) -> float | None:
    """Seconds before try ``n + 1`` of this target, or ``None`` to move on."""
    if not failure.retryable or n + 1 >= retry.attempts:
        return None
    if failure.retry_after is not None:
        return failure.retry_after if failure.retry_after <= retry.max_server_wait else None
    return backoff_delay(n, base=retry.backoff, cap=retry.cap, rand=random.random)
