"""Admission as values (sans-IO): the checks a call must pass, what a state store's answer
means, the ``x-ratelimit-*`` headers and the 429 it turns into.

A call is checked in up to two scopes, the caller and the caller on that model
(``model_limits``), and in each against up to four counters:

- ``r`` requests and ``t`` tokens per **fixed UTC minute**. A fixed window is one integer
  per scope and minute, so admission is one atomic add in Redis and every instance
  agrees on when it resets (the ``x-ratelimit-reset-*`` headers give that instant);
  a reservation is corrected later in the very counter it was taken from. The price:
  up to twice the limit can pass in the seconds around a minute's turn, where a sliding
  window would smooth it, at the cost of a sorted set or two counters per check.
- ``b`` spend in nano-USD per UTC day or calendar month.
- ``s`` streams open now: a set of call ids, each with a lease (``stream_lease``) so a
  process that died mid-stream frees its slots.

Tokens and spend are **reserved** at admission (the estimate) and **settled** later
(actual minus estimate), so concurrent calls can never pass a limit together.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from typing import NamedTuple

from .. import _codes as codes
from .._errors import GatewayError
from ._types import Identity, Limits

__all__ = [
    "BUDGET",
    "REQUESTS",
    "STREAMS",
    "TOKENS",
    "Admission",
    "Check",
    "build_checks",
    "go_duration",
    "refusal",
    "success_headers",
]

REQUESTS, TOKENS, STREAMS, BUDGET = "r", "t", "s", "b"
_MINUTE = 60
# A minute counter lives past its minute long enough for a late settlement to find it.
_MINUTE_TTL = 2 * _MINUTE
_PERIOD_MARGIN = 3600
# What Retry-After says for a full stream limit: nothing tells when a stream will end.
_STREAM_RETRY = 1.0


class Check(NamedTuple):
    kind: str  # REQUESTS | TOKENS | STREAMS | BUDGET
    key: str
    limit: int
    cost: int
    ttl: int  # seconds the counter (or a stream's lease) lives
    reset: float  # seconds until this window ends (the refill instant)
    label: str  # "webapp" or "webapp on gpt-4o-mini", for messages


class Admission:
    """A call let through: what it reserved, and the headers for its answer.

    ``headers`` are the ``x-ratelimit-*`` pairs for a successful response. Hand the
    admission back to ``Governor.settle`` exactly once.
    """

    __slots__ = ("checks", "cost", "headers", "local", "member", "model", "settled", "tokens")

    def __init__(
        self,
        checks: list[Check],
        member: str,
        tokens: int,
        cost: int,
        model: str,
        headers: list[tuple[bytes, bytes]],
        local: bool = False,
    ) -> None:
        self.checks = checks
        self.member = member
        self.tokens = tokens
        self.cost = cost
        self.model = model
        self.headers = headers
        # Admitted by this process's own counters (memory state, or Redis unreachable).
        self.local = local
        self.settled = False

    def __repr__(self) -> str:
        return f"Admission({self.model!r}, tokens={self.tokens}, checks={len(self.checks)})"


_SAFE_TAG = re.compile(r"[A-Za-z0-9._:@-]{1,80}")


@functools.lru_cache(maxsize=4096)
def _base(prefix: str, scope: str, model: str | None) -> str:
    """The key prefix of a scope (made once per scope, not per call). The scope is a Redis
    hash tag: every key of one caller lands in one cluster slot, so one script may touch
    them all. Braces would end the tag early: such names are hashed."""
    tag = scope
    if not _SAFE_TAG.fullmatch(scope):
        tag = "h:" + blake2b(scope.encode(), digest_size=12).hexdigest()
    base = f"{prefix}{{{tag}}}:"
    return base if model is None else f"{base}m:{model}:"


# per → (start, end, id) of the budget period last seen: worked out once per period.
_periods: dict[str, tuple[float, float, str]] = {}


def _period(now: float, per: str) -> tuple[str, float]:
    """The budget period's id and the seconds until it ends (UTC day or month)."""
    known = _periods.get(per)
    if known is None or not known[0] <= now < known[1]:
        when = datetime.fromtimestamp(now, UTC)
        if per == "day":
            start = when.replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + timedelta(days=1)
            ident = start.strftime("d%Y%m%d")
        else:
            start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            end = (start + timedelta(days=32)).replace(day=1)
            ident = start.strftime("m%Y%m")
        known = _periods[per] = (start.timestamp(), end.timestamp(), ident)
    return known[2], known[1] - now


def _scope_checks(
    out: list[Check],
    limits: Limits,
    base: str,
    label: str,
    now: float,
    tokens: int,
    cost: int,
    stream: bool,
    lease: int,
) -> None:
    minute = int(now // _MINUTE)
    reset = (minute + 1) * _MINUTE - now
    if limits.rpm is not None:
        out.append(Check(REQUESTS, f"{base}r:{minute}", limits.rpm, 1, _MINUTE_TTL, reset, label))
    if limits.tpm is not None:
        out.append(
            Check(TOKENS, f"{base}t:{minute}", limits.tpm, tokens, _MINUTE_TTL, reset, label)
        )
    if limits.budget_nano is not None:
        period, left = _period(now, limits.budget_per)
        ttl = math.ceil(left) + _PERIOD_MARGIN
        out.append(Check(BUDGET, f"{base}b:{period}", limits.budget_nano, cost, ttl, left, label))
    if stream and limits.max_streams is not None:
        out.append(Check(STREAMS, f"{base}s", limits.max_streams, 1, lease, _STREAM_RETRY, label))


def build_checks(
    who: Identity,
    model: str,
    *,
    tokens: int,
    cost: int,
    stream: bool,
    now: float,
    prefix: str,
    lease: int,
) -> list[Check]:
    """Every counter this call must fit in, caller scope first."""
    out: list[Check] = []
    if who.limits is not None:
        base = _base(prefix, who.scope, None)
        _scope_checks(out, who.limits, base, who.name, now, tokens, cost, stream, lease)
    per_model = who.model_limits.get(model) if who.model_limits else None
    if per_model is not None:
        base = _base(prefix, who.scope, model)
        label = f"{who.name} on {model}"
        _scope_checks(out, per_model, base, label, now, tokens, cost, stream, lease)
    return out


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string, the form of OpenAI's ``x-ratelimit-reset-*``
    (``"1s"``, ``"6m0s"``, ``"20ms"``); the SDKs and aifetch's own retry parse it."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    millis = math.ceil(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


_HEADER_NAMES = {
    REQUESTS: (
        b"x-ratelimit-limit-requests",
        b"x-ratelimit-remaining-requests",
        b"x-ratelimit-reset-requests",
    ),
    TOKENS: (
        b"x-ratelimit-limit-tokens",
        b"x-ratelimit-remaining-tokens",
        b"x-ratelimit-reset-tokens",
    ),
}


def _rate_headers(
    checks: list[Check], used: list[int], reserved: bool
) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*`` for requests and tokens: the scope with the least room
    left speaks for each (``reserved``: this call's cost already counts)."""
    requests: tuple[int, Check] | None = None
    tokens: tuple[int, Check] | None = None
    for check, before in zip(checks, used, strict=True):
        kind = check.kind
        if kind != REQUESTS and kind != TOKENS:
            continue
        left = check.limit - before - (check.cost if reserved else 0)
        pick = (left if left > 0 else 0, check)
        if kind == REQUESTS:
            if requests is None or pick[0] < requests[0]:
                requests = pick
        elif tokens is None or pick[0] < tokens[0]:
            tokens = pick
    headers: list[tuple[bytes, bytes]] = []
    reset_text = b""
    last_reset = -1.0
    for chosen, names in ((requests, _HEADER_NAMES[REQUESTS]), (tokens, _HEADER_NAMES[TOKENS])):
        if chosen is None:
            continue
        remaining, check = chosen
        if check.reset != last_reset:  # both are minute windows: one string for both
            last_reset = check.reset
            reset_text = go_duration(check.reset).encode()
        headers += ((names[0], b"%d" % check.limit), (names[1], b"%d" % remaining))
        headers.append((names[2], reset_text))
    return headers


def success_headers(checks: list[Check], used: list[int]) -> list[tuple[bytes, bytes]]:
    """Headers for an admitted call (``used``: each counter before this call)."""
    return _rate_headers(checks, used, reserved=True)


def _over(check: Check, before: int) -> bool:
    return before + check.cost > check.limit


def refusal(checks: list[Check], used: list[int]) -> tuple[Check, GatewayError]:
    """The 429 for a call that does not fit, and the check that speaks for it: the failing
    one with the longest wait (an exhausted budget outlasts a full minute). ``Retry-After``
    gives that wait (``retry-after-ms`` too, which the OpenAI SDKs read first)."""
    failing = [(c, u) for c, u in zip(checks, used, strict=True) if _over(c, u)]
    check, before = max(failing, key=lambda pair: pair[0].reset)
    wait = check.reset
    headers = [
        ("retry-after", str(max(1, math.ceil(wait)))),
        ("retry-after-ms", str(max(1, math.ceil(wait * 1000)))),
    ]
    headers += [(k.decode(), v.decode()) for k, v in _rate_headers(checks, used, False)]
    spec = _SPECS.get(check.kind, codes.RATE_LIMITED_REQUESTS)
    return check, spec(_message(check, before, wait), headers=headers)


_SPECS = {BUDGET: codes.INSUFFICIENT_QUOTA, TOKENS: codes.RATE_LIMITED_TOKENS}


def _message(check: Check, before: int, wait: float) -> str:
    again = f"Please try again in {go_duration(wait)}."
    if check.kind == BUDGET:
        return (
            f"The budget for {check.label} is spent: {check.limit / 1e9:.2f} USD, "
            f"{before / 1e9:.4f} USD used or reserved, this call may cost up to "
            f"{check.cost / 1e9:.4f} USD. It renews in {go_duration(wait)}."
        )
    if check.kind == STREAMS:
        return (
            f"Too many concurrent streams for {check.label}: limit {check.limit}. "
            "Try again when a stream has ended."
        )
    if check.cost > check.limit:
        return (
            f"Request too large for {check.label}: it may use {check.cost} tokens and the "
            f"limit is {check.limit} tokens per minute. Lower max_tokens or the input size."
        )
    what, unit = ("requests", "RPM") if check.kind == REQUESTS else ("tokens", "TPM")
    return (
        f"Rate limit reached for {what} per minute ({unit}) on {check.label}: "
        f"limit {check.limit}, used {before}, requested {check.cost}. {again}"
    )
