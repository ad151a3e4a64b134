"""Retry arithmetic: how long the server asked us to wait, backoff with jitter, and whether
to retry at all.

Sans-IO: headers come in through a ``get_header`` callable, the clock and the random source
are arguments, and nothing here sleeps. The async and sync clients share it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final, NamedTuple

__all__ = [
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "IDEMPOTENT_METHODS",
    "RetryDecision",
    "backoff_delay",
    "decide_retry",
    "parse_duration",
    "server_wait",
]

GetHeader = Callable[[str], str | None]

# 408 Request Timeout, 429 Too Many Requests, and the 5xx statuses a proxy or an overloaded
# model server returns transiently. 501 and 505 are permanent, so they are left out.
DEFAULT_RETRY_STATUSES: Final[frozenset[int]] = frozenset({408, 429, 500, 502, 503, 504})

# RFC 9110 §9.2.2: repeating one of these has the same effect as sending it once.
IDEMPOTENT_METHODS: Final[frozenset[str]] = frozenset(
    {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
)

# What a request that broke after being sent may be retried with, when the caller gives no
# set. POST is included on purpose: every AI API call is a POST, and the official SDKs
# (openai-python, anthropic-sdk-python) retry them; a repeated completion costs tokens but
# has no other side effect. Callers with non-repeatable POSTs pass their own set.
DEFAULT_RETRY_METHODS: Final[frozenset[str]] = frozenset(
    {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST"}
)

# Failures where the request never reached the server: always safe to repeat.
_NOT_SENT_KINDS: Final = frozenset({"connect", "timeout_connect"})
# Failures after the request may have been received: safe only for repeatable methods.
_MAYBE_SENT_KINDS: Final = frozenset({"network", "timeout_first_byte"})

# One term of a Go time.Duration string, which is what OpenAI's x-ratelimit-reset-* headers
# carry ("6m0s", "1h2m3.5s", "150ms"). Go also emits µs/us/ns for sub-millisecond values.
# re.ASCII keeps \d to 0-9: float() would otherwise accept digits from any script.
_DURATION_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)", re.ASCII)
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|μs|ns|h|m|s))+", re.ASCII)
_UNIT_SECONDS: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}
# A plain decimal number; float() alone would also accept "nan", "inf", "1e400" and "1_0".
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``), or None.

    A leading sign is accepted as Go accepts it; a bare ``"0"`` is zero, as in Go. Any other
    bare number is rejected: without a unit it could be seconds or an epoch timestamp.
    """
    s = text.strip()
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not _DURATION_FULL.fullmatch(s):
        return None
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_TERM.findall(s))
    return _finite(sign * total)


def _parse_number(text: str) -> float | None:
    s = text.strip()
    return _finite(float(s)) if _NUMBER.fullmatch(s) else None


def _parse_retry_after(text: str, now: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date. Decimals ("1.5") are accepted too,
    since some servers send them and the intent is plain."""
    seconds = _parse_number(text)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(text.strip())
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    # An HTTP-date is always GMT (RFC 9110 §5.6.7); a zone-less obsolete form means GMT too.
    if when.tzinfo is None:
        return _finite(when.replace(tzinfo=UTC).timestamp() - now)
    return _finite(when.timestamp() - now)


def _ratelimit_reset(get_header: GetHeader) -> float | None:
    """The longest x-ratelimit-reset-{requests,tokens} wait among the limits that are used up.

    A reset time for a limit that still has room is not a reason to wait: a 429 for tokens
    says nothing about when the request limit resets.
    """
    waits: list[float] = []
    for kind in ("requests", "tokens"):
        raw_reset = get_header(f"x-ratelimit-reset-{kind}")
        if raw_reset is None:
            continue
        reset = parse_duration(raw_reset)
        if reset is None:
            continue
        raw_remaining = get_header(f"x-ratelimit-remaining-{kind}")
        if raw_remaining is None or _parse_number(raw_remaining) == 0:
            waits.append(reset)
    return max(waits) if waits else None


def server_wait(get_header: GetHeader, *, now: float) -> float | None:
    """Seconds the server asked the client to wait before retrying, or None if it did not say.

    Sources, first usable one wins: ``retry-after-ms`` (OpenAI, milliseconds),
    ``Retry-After`` (seconds or HTTP-date, relative to *now* in epoch seconds), the
    exhausted ``x-ratelimit-reset-*`` durations, then ``RateLimit-Reset`` (delta seconds,
    draft-ietf-httpapi-ratelimit-headers). Unparsable values are skipped; a negative wait
    (a date in the past) is 0.
    """
    wait: float | None = None
    raw = get_header("retry-after-ms")
    if raw is not None and (ms := _parse_number(raw)) is not None:
        wait = ms / 1000.0
    if wait is None and (raw := get_header("retry-after")) is not None:
        wait = _parse_retry_after(raw, now)
    if wait is None:
        wait = _ratelimit_reset(get_header)
    if wait is None and (raw := get_header("ratelimit-reset")) is not None:
        wait = _parse_number(raw)
    return None if wait is None else max(0.0, wait)


# The largest exponent worth computing: 2**64 times any sane base exceeds any sane cap, and
# it keeps a huge attempt number from overflowing float conversion.
_MAX_EXPONENT = 64


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: ``rand() * min(cap, base * 2**attempt)``.

    *attempt* 0 is the first retry; *rand* returns a float in [0, 1). Full jitter spreads a
    crowd of clients that failed together across the whole window instead of re-synchronising
    them ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
    """
    exponent = min(max(attempt, 0), _MAX_EXPONENT)
    ceiling = min(cap, base * float(2**exponent))
    return max(0.0, rand() * ceiling)


class RetryDecision(NamedTuple):
    """What decide_retry() concluded.

    *server_asked* is the wait the server requested, whenever it gave one, even when the
    answer is not to retry: the caller puts it on the RateLimitError it raises.
    """

    retry: bool
    delay: float
    reason: str
    server_asked: float | None


def _failure_reason(
    status: int | None,
    error_kind: str | None,
    method: str,
    retry_statuses: frozenset[int],
    retry_methods: frozenset[str] | None,
) -> tuple[bool, str]:
    """Whether this kind of failure is retryable at all, and a short reason."""
    if status is not None:
        if status in retry_statuses:
            return True, f"status {status}"
        return False, f"status {status} is not retryable"
    if error_kind in _NOT_SENT_KINDS:
        return True, error_kind
    if error_kind in _MAYBE_SENT_KINDS:
        verb = method.upper()
        allowed = DEFAULT_RETRY_METHODS if retry_methods is None else retry_methods
        if verb in IDEMPOTENT_METHODS or verb in allowed:
            return True, error_kind
        return False, f"{error_kind} error on {verb}, which may not be repeated"
    # Anything else (an idle or total timeout, an unknown kind that is probably a bug) is not
    # retried: repeating a bug hides it, and an idle timeout means the body had started.
    return False, f"{error_kind} is not retryable"


def decide_retry(
    *,
    attempt: int,
    max_retries: int,
    status: int | None,
    error_kind: str | None,
    method: str,
    retry_statuses: frozenset[int],
    retry_methods: frozenset[str] | None,
    get_header: GetHeader | None,
    base: float,
    cap: float,
    max_server_wait: float,
    now: float,
    remaining: float | None,
    rand: Callable[[], float],
) -> RetryDecision:
    """Decide whether attempt number *attempt* (0 = first retry) should happen, and when.

    *status* is set when a response arrived; otherwise *error_kind* names the failure:
    ``"connect"`` / ``"timeout_connect"`` (nothing was sent: always retryable),
    ``"network"`` / ``"timeout_first_byte"`` (retryable for idempotent methods and
    *retry_methods*, which defaults to DEFAULT_RETRY_METHODS, POST included). A wait the
    server asked for is used as given, without jitter; a wait beyond *max_server_wait*, or
    one that would overrun *remaining* seconds of the total deadline (reason ``"deadline"``),
    ends the retries.
    """
    server_asked = server_wait(get_header, now=now) if get_header is not None else None
    ok, reason = _failure_reason(status, error_kind, method, retry_statuses, retry_methods)
    if not ok:
        return RetryDecision(False, 0.0, reason, server_asked)
    if attempt >= max_retries:
        return RetryDecision(False, 0.0, f"gave up after {max_retries} retries", server_asked)
    if server_asked is not None:
        if server_asked > max_server_wait:
            why = f"server asked to wait {server_asked:g}s, more than {max_server_wait:g}s"
            return RetryDecision(False, 0.0, why, server_asked)
        delay = server_asked
    else:
        delay = backoff_delay(attempt, base=base, cap=cap, rand=rand)
    if remaining is not None and delay >= remaining:
        return RetryDecision(False, delay, "deadline", server_asked)
    return RetryDecision(True, delay, reason, server_asked)
