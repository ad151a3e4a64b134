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
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from .. import _codes as codes
from .._errors import GatewayError
from ._types import Identity, Limits

if TYPE_CHECKING:
    from ._pricing import Price

__all__ = [
    "BUDGET",
    "REQUESTS",
    "STREAMS",
    "TOKENS",
    "Admission",
    "CallPlan",
    "Check",
    "Slot",
    "build_checks",
    "go_duration",
    "layout",
    "quick_headers",
    "refusal",
    "reset_text",
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


class Admission(msgspec.Struct):
    """A call let through: what it reserved, and the headers for its answer.

    ``headers`` are the ``x-ratelimit-*`` pairs for a successful response. Hand the
    admission back to ``Governor.settle`` exactly once. ``local``: admitted by this
    process's own counters (memory state, or Redis unreachable); ``plan``: memory state's
    cells it was admitted on (a ``MemoryPlan``), settled in place. (A Struct: one is made
    per limited call, and built in C.)
    """

    checks: list[Check] | list[Slot]  # what to settle: kind [0] and key [1] of each
    member: str
    tokens: int
    cost: int
    model: str
    headers: list[tuple[bytes, bytes]]
    local: bool = False
    plan: Any = None
    settled: bool = False

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


# One call's counters less what varies per call: (kind, key, limit, ttl, label, ends),
# ``ends`` the instant the counter's window ends (``None``: a stream slot). Worked out once
# per caller, model and minute rather than per call: the keys are strings built from the
# minute and the budget period (a day's or a month's turn is also a minute's), and making
# them per call was a third of a memory admission's time.
Slot = tuple[str, str, int, int, str, float | None]
_layouts: dict[tuple[Identity, str | None, bool, str, int], tuple[int, list[Slot]]] = {}
# Bounded: virtual keys get new identities on every refresh of the key ring.
_MAX_LAYOUTS = 4096


def _scope_layout(
    out: list[Slot],
    limits: Limits,
    base: str,
    label: str,
    now: float,
    minute: int,
    stream: bool,
    lease: int,
) -> None:
    ends = float((minute + 1) * _MINUTE)
    if limits.rpm is not None:
        out.append((REQUESTS, f"{base}r:{minute}", limits.rpm, _MINUTE_TTL, label, ends))
    if limits.tpm is not None:
        out.append((TOKENS, f"{base}t:{minute}", limits.tpm, _MINUTE_TTL, label, ends))
    if limits.budget_nano is not None:
        period, left = _period(now, limits.budget_per)
        ttl = math.ceil(left) + _PERIOD_MARGIN
        out.append((BUDGET, f"{base}b:{period}", limits.budget_nano, ttl, label, now + left))
    if stream and limits.max_streams is not None:
        out.append((STREAMS, f"{base}s", limits.max_streams, lease, label, None))


def layout(
    who: Identity, model: str, stream: bool, now: float, prefix: str, lease: int
) -> list[Slot]:
    minute = int(now // _MINUTE)
    per_model = who.model_limits.get(model) if who.model_limits else None
    # The model is part of the key only when it has limits of its own: any name a caller
    # sends would otherwise make an entry.
    cache_key = (who, model if per_model is not None else None, stream, prefix, lease)
    known = _layouts.get(cache_key)
    if known is not None and known[0] == minute:
        return known[1]
    out: list[Slot] = []
    if who.limits is not None:
        base = _base(prefix, who.scope, None)
        _scope_layout(out, who.limits, base, who.name, now, minute, stream, lease)
    if per_model is not None:
        base = _base(prefix, who.scope, model)
        label = f"{who.name} on {model}"
        _scope_layout(out, per_model, base, label, now, minute, stream, lease)
    if len(_layouts) >= _MAX_LAYOUTS:
        _layouts.clear()
    _layouts[cache_key] = (minute, out)
    return out


# A Check made without NamedTuple's generated __new__ (a Python frame per check).
_make_check = tuple.__new__


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
    for kind, key, limit, ttl, label, ends in layout(who, model, stream, now, prefix, lease):
        amount = tokens if kind == TOKENS else cost if kind == BUDGET else 1
        reset = _STREAM_RETRY if ends is None else ends - now
        out.append(_make_check(Check, (kind, key, limit, amount, ttl, reset, label)))
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


_LIMIT_REQUESTS = b"x-ratelimit-limit-requests"
_REMAINING_REQUESTS = b"x-ratelimit-remaining-requests"
_RESET_REQUESTS = b"x-ratelimit-reset-requests"
_LIMIT_TOKENS = b"x-ratelimit-limit-tokens"
_REMAINING_TOKENS = b"x-ratelimit-remaining-tokens"
_RESET_TOKENS = b"x-ratelimit-reset-tokens"


def _rate_headers(
    checks: list[Check], used: list[int], reserved: bool
) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*`` for requests and tokens: the scope with the least room
    left speaks for each (``reserved``: this call's cost already counts). Written for the
    hot path: one pass, tuple indexes (kind 0, limit 2, cost 3, reset 5)."""
    requests: Check | None = None
    tokens: Check | None = None
    requests_left = tokens_left = 0
    for check, before in zip(checks, used, strict=True):
        kind = check[0]
        if kind == REQUESTS:
            left = check[2] - before - (check[3] if reserved else 0)
            if requests is None or left < requests_left:
                requests, requests_left = check, left
        elif kind == TOKENS:
            left = check[2] - before - (check[3] if reserved else 0)
            if tokens is None or left < tokens_left:
                tokens, tokens_left = check, left
    headers: list[tuple[bytes, bytes]] = []
    chosen = requests or tokens
    if chosen is None:
        return headers
    # Both are minute windows of the same minute: one reset string for both.
    reset = reset_text(chosen[5])
    if requests is not None:
        headers.append((_LIMIT_REQUESTS, b"%d" % requests[2]))
        headers.append((_REMAINING_REQUESTS, b"%d" % max(requests_left, 0)))
        headers.append((_RESET_REQUESTS, reset))
    if tokens is not None:
        headers.append((_LIMIT_TOKENS, b"%d" % tokens[2]))
        headers.append((_REMAINING_TOKENS, b"%d" % max(tokens_left, 0)))
        headers.append((_RESET_TOKENS, reset))
    return headers


# The reset text last made, by its millisecond: calls within one millisecond share it
# (formatting a Go duration is ~0.5 µs; under load many calls fall in one millisecond).
_last_reset: list[Any] = [-1, b""]


def reset_text(seconds: float) -> bytes:
    millis = math.ceil(seconds * 1000)
    if millis != _last_reset[0]:
        _last_reset[0], _last_reset[1] = millis, go_duration(millis / 1000).encode()
    text: bytes = _last_reset[1]
    return text


class CallPlan:
    """A caller's counters on one model for one minute, worked out once per minute rather
    than per call: the layout (``slots``), the model's price (for a budget's estimate and
    settlement), and which limit of each kind speaks in the headers: ``requests`` and
    ``tokens`` are (index, limit, the limit as header bytes), ``None`` when none; with
    several scopes (``simple`` false) the headers are worked out in full instead. Each
    state store adds what its calls need (memory: the counters' cells; Redis: the
    command's bytes)."""

    __slots__ = (
        "budget",
        "ends",
        "minute",
        "price",
        "requests",
        "simple",
        "slots",
        "streams",
        "tokens",
    )

    def __init__(self, minute: int, slots: list[Slot], price: Price | None) -> None:
        self.minute = minute
        self.slots = slots
        self.price = price
        kinds = [slot[0] for slot in slots]
        self.budget = BUDGET in kinds and price is not None
        self.streams = STREAMS in kinds
        self.simple = kinds.count(REQUESTS) <= 1 and kinds.count(TOKENS) <= 1
        self.requests: tuple[int, int, bytes] | None = None
        self.tokens: tuple[int, int, bytes] | None = None
        self.ends = 0.0  # when this minute's windows end (the reset the headers give)
        for index, (kind, _, limit, _, _, ends) in enumerate(slots):
            if kind == REQUESTS:
                self.requests = (index, limit, b"%d" % limit)
            elif kind == TOKENS:
                self.tokens = (index, limit, b"%d" % limit)
            if ends is not None and kind in (REQUESTS, TOKENS):
                self.ends = ends

    def cost_of(self, estimate_prompt: int, estimate_output: int) -> int:
        """The most a call may cost (nano-USD; 0 without a budget to count it against)."""
        price = self.price
        if not self.budget or price is None:
            return 0
        return round(estimate_prompt * price.input + estimate_output * price.output)

    def headers(self, used: list[int], tokens: int, now: float) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers of an admitted call (a ``simple`` plan)."""
        if self.requests is not None and self.tokens is not None:  # the usual pair, inline
            index, limit, text = self.requests
            left = limit - used[index] - 1
            t_index, t_limit, t_text = self.tokens
            t_left = t_limit - used[t_index] - tokens
            reset = reset_text(self.ends - now)
            return [
                (_LIMIT_REQUESTS, text),
                (_REMAINING_REQUESTS, b"%d" % (left if left > 0 else 0)),
                (_RESET_REQUESTS, reset),
                (_LIMIT_TOKENS, t_text),
                (_REMAINING_TOKENS, b"%d" % (t_left if t_left > 0 else 0)),
                (_RESET_TOKENS, reset),
            ]
        requests = tokens_left = None
        if self.requests is not None:
            index, limit, text = self.requests
            requests = (text, limit - used[index] - 1)
        if self.tokens is not None:
            index, limit, text = self.tokens
            tokens_left = (text, limit - used[index] - tokens)
        return quick_headers(requests, tokens_left, self.ends - now)


def quick_headers(
    requests: tuple[bytes, int] | None, tokens: tuple[bytes, int] | None, reset: float
) -> list[tuple[bytes, bytes]]:
    """``success_headers`` for a caller with one scope, from what it already knows: each
    kind's limit (as header bytes) and what is left of it after this call."""
    text = reset_text(reset)
    if requests is not None and tokens is not None:  # the usual pair, as one list display
        return [
            (_LIMIT_REQUESTS, requests[0]),
            (_REMAINING_REQUESTS, b"%d" % (requests[1] if requests[1] > 0 else 0)),
            (_RESET_REQUESTS, text),
            (_LIMIT_TOKENS, tokens[0]),
            (_REMAINING_TOKENS, b"%d" % (tokens[1] if tokens[1] > 0 else 0)),
            (_RESET_TOKENS, text),
        ]
    headers: list[tuple[bytes, bytes]] = []
    if requests is not None:
        headers.append((_LIMIT_REQUESTS, requests[0]))
        headers.append((_REMAINING_REQUESTS, b"%d" % max(requests[1], 0)))
        headers.append((_RESET_REQUESTS, text))
    if tokens is not None:
        headers.append((_LIMIT_TOKENS, tokens[0]))
        headers.append((_REMAINING_TOKENS, b"%d" % max(tokens[1], 0)))
        headers.append((_RESET_TOKENS, text))
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
