from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifetch._retry_timing import (
    DEFAULT_RETRY_METHODS,
    DEFAULT_RETRY_STATUSES,
    IDEMPOTENT_METHODS,
    RetryDecision,
    backoff_delay,
    decide_retry,
    parse_duration,
    server_wait,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def headers(values: Mapping[str, str]) -> Callable[[str], str | None]:
    """A case-insensitive get_header over a dict, like a real header map."""
    lowered = {k.lower(): v for k, v in values.items()}
    return lambda name: lowered.get(name.lower())


def http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("150ms", 0.15),
        ("0.5s", 0.5),
        ("1h2m3.5s", 3723.5),
        ("2m59.56s", 179.56),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("-0", 0.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("500μs", 0.0005),
        ("100ns", 1e-7),
        ("1s500ms", 1.5),
        ("  7s \t", 7.0),
        ("+2s", 2.0),
        ("-2s", -2.0),
        ("99999999h", 99999999 * 3600.0),
        # Unparsable.
        ("", None),
        ("   ", None),
        ("s", None),
        ("5", None),  # no unit: seconds or an epoch timestamp? refuse to guess
        ("1700000000", None),
        ("5x", None),
        ("1 s", None),
        ("1.2.3s", None),
        ("abc", None),
        ("1e3s", None),
        ("nans", None),
        ("infs", None),
        ("--1s", None),
        ("-", None),
        ("٣s", None),  # non-ASCII digits
        ("9" * 400 + "h", None),  # overflows to infinity
    ],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    got = parse_duration(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("hdrs", "expected"),
    [
        ({}, None),
        # retry-after-ms (OpenAI) first, in milliseconds.
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "abc", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "nan", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "inf"}, None),
        ({"retry-after-ms": "1e3"}, None),
        ({"retry-after-ms": "1_000"}, None),
        ({"retry-after-ms": "-100"}, 0.0),
        ({"retry-after-ms": " 250 "}, 0.25),
        # Retry-After: seconds (decimals accepted) or HTTP-date.
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "99999999999999999999"}, 1e20),
        ({"Retry-After": "9" * 400}, None),  # not finite, not a date
        ({"Retry-After": http_date(NOW + 30)}, 30.0),
        ({"Retry-After": http_date(NOW - 30)}, 0.0),  # in the past
        ({"Retry-After": "Tuesday, 14-Nov-23 22:14:00 GMT"}, 40.0),  # RFC 850 form
        ({"Retry-After": "Tue Nov 14 22:14:00 2023"}, 40.0),  # asctime form, no zone = GMT
        ({"Retry-After": "Tue, 14 Nov 2023 22:14:00 +0100"}, 0.0),  # an hour ago
        ({"Retry-After": "Tue, 32 Nov 2023 22:14:00 GMT"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "Tue, 14 Nov 99999999999 22:14:00 GMT"}, None),
        ({"Retry-After": "garbage", "RateLimit-Reset": "7"}, 7.0),
        # x-ratelimit-reset-*: only for exhausted limits, the longest wins.
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-requests": "0"}, 1.0),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-requests": "3"}, None),
        ({"x-ratelimit-reset-requests": "1s"}, 1.0),  # remaining absent: trust the reset
        ({"x-ratelimit-reset-tokens": "6m0s", "x-ratelimit-remaining-tokens": "0"}, 360.0),
        (
            {
                "x-ratelimit-reset-requests": "2s",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-tokens": "20ms",
                "x-ratelimit-remaining-tokens": "0",
            },
            2.0,
        ),
        (
            {
                "x-ratelimit-reset-requests": "2s",
                "x-ratelimit-remaining-requests": "10",
                "x-ratelimit-reset-tokens": "20ms",
                "x-ratelimit-remaining-tokens": "0",
            },
            0.02,
        ),
        ({"x-ratelimit-reset-tokens": "1s", "x-ratelimit-remaining-tokens": "0.0"}, 1.0),
        ({"x-ratelimit-reset-tokens": "1s", "x-ratelimit-remaining-tokens": "abc"}, None),
        ({"x-ratelimit-reset-tokens": "junk", "x-ratelimit-remaining-tokens": "0"}, None),
        ({"x-ratelimit-reset-tokens": "-1s", "x-ratelimit-remaining-tokens": "0"}, 0.0),
        (
            {"x-ratelimit-reset-tokens": "junk", "x-ratelimit-reset-requests": "3s"},
            3.0,
        ),
        ({"x-ratelimit-reset-tokens": "5s", "retry-after": "1"}, 1.0),  # lower priority
        ({"x-ratelimit-reset-tokens": "5s", "ratelimit-reset": "1"}, 5.0),  # higher priority
        # RateLimit-Reset (IETF draft): delta seconds.
        ({"RateLimit-Reset": "50"}, 50.0),
        ({"RateLimit-Reset": "-3"}, 0.0),
        ({"RateLimit-Reset": "x"}, None),
        ({"Retry-After": "٣"}, None),  # non-ASCII digits are not delay-seconds
    ],
)
def test_server_wait(hdrs: dict[str, str], expected: float | None) -> None:
    got = server_wait(headers(hdrs), now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "r", "expected"),
    [
        (0, 0.5, 8.0, 0.5, 0.25),
        (1, 0.5, 8.0, 0.5, 0.5),
        (2, 0.5, 8.0, 0.999, 0.999 * 2.0),
        (4, 0.5, 8.0, 0.5, 4.0),  # 0.5 * 16 = 8 = cap
        (10, 0.5, 8.0, 0.5, 4.0),  # capped
        (10_000, 0.5, 8.0, 0.5, 4.0),  # huge attempt: no overflow
        (-3, 0.5, 8.0, 0.5, 0.25),  # negative attempt treated as the first
        (3, 0.5, 8.0, 0.0, 0.0),
        (3, 0.0, 8.0, 0.7, 0.0),
        (3, 1.0, 0.0, 0.7, 0.0),
        (3, -1.0, 8.0, 0.7, 0.0),  # never negative
    ],
)
def test_backoff_delay(attempt: int, base: float, cap: float, r: float, expected: float) -> None:
    assert backoff_delay(attempt, base=base, cap=cap, rand=lambda: r) == pytest.approx(expected)


@given(
    st.integers(min_value=-10, max_value=10**6),
    st.floats(min_value=0.0, max_value=1e6),
    st.floats(min_value=0.0, max_value=1e6),
    st.floats(min_value=0.0, max_value=0.9999999),
)
def test_backoff_delay_stays_in_window(attempt: int, base: float, cap: float, r: float) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rand=lambda: r)
    assert 0.0 <= delay <= cap


def test_default_sets() -> None:
    assert {408, 429, 500, 502, 503, 504} == DEFAULT_RETRY_STATUSES
    assert {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST"} == DEFAULT_RETRY_METHODS
    assert "POST" not in IDEMPOTENT_METHODS
    assert "PATCH" not in DEFAULT_RETRY_METHODS


def decide(**overrides: Any) -> RetryDecision:
    args: dict[str, Any] = {
        "attempt": 0,
        "max_retries": 2,
        "status": 503,
        "error_kind": None,
        "method": "POST",
        "retry_statuses": DEFAULT_RETRY_STATUSES,
        "retry_methods": None,
        "get_header": None,
        "base": 1.0,
        "cap": 8.0,
        "max_server_wait": 60.0,
        "now": NOW,
        "remaining": None,
        "rand": lambda: 0.5,
    }
    args.update(overrides)
    return decide_retry(**args)


@pytest.mark.parametrize(
    ("overrides", "retry"),
    [
        ({"status": 503}, True),
        ({"status": 429}, True),
        ({"status": 408}, True),
        ({"status": 400}, False),
        ({"status": 401}, False),
        ({"status": 501}, False),
        ({"status": 200}, False),
        ({"status": 418, "retry_statuses": frozenset({418})}, True),
        ({"status": 503, "retry_statuses": frozenset()}, False),
        # A status is retried whatever the method (the statuses say the server did not act).
        ({"status": 503, "method": "PATCH"}, True),
        # Nothing was sent: always safe.
        ({"status": None, "error_kind": "connect", "method": "PATCH"}, True),
        ({"status": None, "error_kind": "timeout_connect", "method": "PATCH"}, True),
        # Maybe sent: repeatable methods only.
        ({"status": None, "error_kind": "network", "method": "POST"}, True),
        ({"status": None, "error_kind": "network", "method": "post"}, True),
        ({"status": None, "error_kind": "network", "method": "GET"}, True),
        ({"status": None, "error_kind": "network", "method": "PATCH"}, False),
        ({"status": None, "error_kind": "timeout_first_byte", "method": "POST"}, True),
        ({"status": None, "error_kind": "timeout_first_byte", "method": "PATCH"}, False),
        (
            {
                "status": None,
                "error_kind": "network",
                "method": "POST",
                "retry_methods": frozenset(),
            },
            False,
        ),
        (
            {
                "status": None,
                "error_kind": "network",
                "method": "GET",
                "retry_methods": frozenset(),
            },
            True,  # idempotent methods are always repeatable
        ),
        (
            {
                "status": None,
                "error_kind": "network",
                "method": "PATCH",
                "retry_methods": frozenset({"PATCH"}),
            },
            True,
        ),
        # Unknown or post-body failures are never retried.
        ({"status": None, "error_kind": "timeout_idle"}, False),
        ({"status": None, "error_kind": "timeout_total"}, False),
        ({"status": None, "error_kind": "bug"}, False),
        ({"status": None, "error_kind": None}, False),
        # Attempts.
        ({"attempt": 1}, True),
        ({"attempt": 2}, False),
        ({"attempt": 5}, False),
        ({"max_retries": 0}, False),
    ],
)
def test_decide_retry_whether(overrides: dict[str, Any], retry: bool) -> None:
    assert decide(**overrides).retry is retry


def test_decide_retry_uses_jittered_backoff_without_server_wait() -> None:
    d = decide(attempt=2, max_retries=5, rand=lambda: 0.25)
    assert d == RetryDecision(True, 1.0, "status 503", None)


def test_decide_retry_uses_server_wait_without_jitter() -> None:
    calls: list[int] = []

    def rand() -> float:
        calls.append(1)
        return 0.5

    d = decide(status=429, get_header=headers({"retry-after": "7"}), rand=rand)
    assert d == RetryDecision(True, 7.0, "status 429", 7.0)
    assert calls == []


def test_decide_retry_server_wait_of_zero_retries_at_once() -> None:
    d = decide(get_header=headers({"retry-after": "0"}))
    assert (d.retry, d.delay, d.server_asked) == (True, 0.0, 0.0)


def test_decide_retry_headers_without_a_wait_fall_back_to_backoff() -> None:
    d = decide(get_header=headers({"content-type": "text/plain"}))
    assert (d.retry, d.delay, d.server_asked) == (True, 0.5, None)


def test_decide_retry_refuses_a_server_wait_over_the_limit() -> None:
    d = decide(status=429, get_header=headers({"retry-after": "3600"}), max_server_wait=60.0)
    assert d.retry is False
    assert d.server_asked == 3600.0
    assert "3600" in d.reason
    assert "60" in d.reason


def test_decide_retry_server_wait_equal_to_the_limit_is_allowed() -> None:
    d = decide(get_header=headers({"retry-after": "60"}), max_server_wait=60.0)
    assert (d.retry, d.delay) == (True, 60.0)


def test_decide_retry_reports_server_wait_even_when_out_of_retries() -> None:
    d = decide(attempt=2, status=429, get_header=headers({"retry-after-ms": "2500"}))
    assert d.retry is False
    assert d.server_asked == 2.5
    assert "2" in d.reason


def test_decide_retry_reports_server_wait_on_non_retryable_status() -> None:
    d = decide(status=400, get_header=headers({"retry-after": "4"}))
    assert (d.retry, d.server_asked) == (False, 4.0)
    assert "400" in d.reason


@pytest.mark.parametrize(
    ("remaining", "retry"),
    [(None, True), (100.0, True), (7.001, True), (7.0, False), (3.0, False), (0.0, False)],
)
def test_decide_retry_respects_the_deadline(remaining: float | None, retry: bool) -> None:
    d = decide(get_header=headers({"retry-after": "7"}), remaining=remaining)
    assert d.retry is retry
    if not retry:
        assert d.reason == "deadline"


def test_decide_retry_deadline_applies_to_backoff_too() -> None:
    d = decide(attempt=1, rand=lambda: 0.5, remaining=0.9)  # backoff is 1.0
    assert (d.retry, d.reason) == (False, "deadline")
    assert d.server_asked is None


def test_decide_retry_reason_names_the_error_kind() -> None:
    assert decide(status=None, error_kind="connect").reason == "connect"
    refused = decide(status=None, error_kind="network", method="PATCH")
    assert "PATCH" in refused.reason
    assert "network" in refused.reason
