"""Governance's pure parts: durations, windows, headers, refusals, estimates, prices,
time arguments, reports, config validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aifetch._retry_timing import parse_duration, server_wait
from aifetch.gateway import ConfigError
from aifetch.gateway.governance import Identity, Limits, Usage, check_workers
from aifetch.gateway.governance._estimate import estimate_request
from aifetch.gateway.governance._plan import (
    BUDGET,
    REQUESTS,
    STREAMS,
    TOKENS,
    build_checks,
    go_duration,
    refusal,
    success_headers,
)
from aifetch.gateway.governance._pricing import PriceTable
from aifetch.gateway.governance._report import render_usage
from aifetch.gateway.governance._timearg import parse_instant, parse_span
from aifetch.gateway.governance._types import UsageLine
from tests.governance.conftest import make_config


@pytest.mark.parametrize(
    "seconds", [0.0004, 0.02, 0.999, 1.0, 1.5, 59.9991, 60.0, 61.25, 359.5, 3600.0, 7384.001]
)
def test_go_duration_round_trips_through_the_retry_parser(seconds: float) -> None:
    text = go_duration(seconds)
    parsed = parse_duration(text)
    assert parsed is not None, text
    # Rounded up to the millisecond (never tells a client to come back too early).
    assert seconds <= parsed + 1e-9
    assert parsed - seconds < 0.0011


def test_go_duration_reads_like_openai() -> None:
    assert go_duration(1.0) == "1s"
    assert go_duration(360.0) == "6m0s"
    assert go_duration(0.02) == "20ms"
    assert go_duration(3723.5) == "1h2m3.5s"


def _who(**limits: Any) -> Identity:
    model_limits = limits.pop("model_limits", {})
    return Identity("webapp", limits=Limits(**limits), model_limits=model_limits)


def test_checks_for_each_configured_limit_and_scope() -> None:
    now = datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    who = _who(
        rpm=10,
        tpm=1000,
        max_streams=2,
        budget_usd=5,
        budget_per="month",
        model_limits={"m1": Limits(rpm=3)},
    )
    checks = build_checks(
        who, "m1", tokens=100, cost=7, stream=True, now=now, prefix="p:", lease=900
    )
    assert [c.kind for c in checks] == [REQUESTS, TOKENS, BUDGET, STREAMS, REQUESTS]
    minute = int(now // 60)
    assert checks[0].key == f"p:{{c:webapp}}:r:{minute}"
    assert checks[0].reset == pytest.approx(30.0)
    assert checks[1].cost == 100
    # The month ends at midnight UTC, 30 s later; its key names the month.
    assert checks[2].key == "p:{c:webapp}:b:m202603"
    assert checks[2].reset == pytest.approx(30.0)
    assert checks[2].limit == 5_000_000_000
    assert checks[3].ttl == 900
    assert checks[4].key == f"p:{{c:webapp}}:m:m1:r:{minute}"
    assert checks[4].label == "webapp on m1"
    # No stream: no stream slot; another model: no per-model check.
    kinds = [
        c.kind
        for c in build_checks(
            who, "m2", tokens=1, cost=0, stream=False, now=now, prefix="p:", lease=900
        )
    ]
    assert kinds == [REQUESTS, TOKENS, BUDGET]


def test_a_name_with_braces_gets_a_hashed_tag() -> None:
    who = Identity("team {a}", limits=Limits(rpm=1))
    (check,) = build_checks(who, "m", tokens=0, cost=0, stream=False, now=0, prefix="", lease=1)
    tag = check.key[check.key.index("{") + 1 : check.key.index("}")]
    assert "{" not in tag
    assert tag.startswith("h:")


def test_success_headers_report_the_tightest_scope() -> None:
    who = _who(rpm=10, tpm=1000, model_limits={"m1": Limits(rpm=3)})
    checks = build_checks(who, "m1", tokens=100, cost=0, stream=False, now=30, prefix="", lease=1)
    headers = dict(success_headers(checks, [4, 200, 1]))
    # Caller scope: 10 - 4 - 1 = 5 left; model scope: 3 - 1 - 1 = 1 left → the model's.
    assert headers[b"x-ratelimit-limit-requests"] == b"3"
    assert headers[b"x-ratelimit-remaining-requests"] == b"1"
    assert headers[b"x-ratelimit-limit-tokens"] == b"1000"
    assert headers[b"x-ratelimit-remaining-tokens"] == b"700"
    assert headers[b"x-ratelimit-reset-requests"] == b"30s"


def test_refusal_is_a_429_the_retry_logic_understands() -> None:
    who = _who(rpm=2, tpm=1000)
    checks = build_checks(who, "m1", tokens=100, cost=0, stream=False, now=45.5, prefix="", lease=1)
    check, error = refusal(checks, [2, 100])
    assert check.kind == REQUESTS
    assert error.status == 429
    assert (error.type, error.code) == ("requests", "rate_limit_exceeded")
    assert "limit 2, used 2" in error.message
    headers = dict(error.headers)
    assert headers["retry-after"] == "15"
    assert headers["retry-after-ms"] == "14500"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
    wait = server_wait(lambda name: headers.get(name), now=0)
    assert wait == pytest.approx(14.5)


def test_an_exhausted_budget_speaks_over_a_full_minute() -> None:
    now = datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC).timestamp()
    who = _who(rpm=1, budget_usd=1.0)
    checks = build_checks(who, "m1", tokens=10, cost=5, stream=False, now=now, prefix="", lease=1)
    check, error = refusal(checks, [1, 999_999_999])
    assert check.kind == BUDGET
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert dict(error.headers)["retry-after"] == str(12 * 3600 - 10)
    assert "renews in 11h59m50s" in error.message


def test_a_request_larger_than_the_token_limit_says_so() -> None:
    who = _who(tpm=100)
    checks = build_checks(who, "m1", tokens=500, cost=0, stream=False, now=0, prefix="", lease=1)
    _, error = refusal(checks, [0])
    assert error.type == "tokens"
    assert "Request too large" in error.message
    assert "max_tokens" in error.message


def test_estimate_counts_body_bytes_and_max_tokens() -> None:
    assert estimate_request(401, max_tokens=50).tokens == 101 + 50
    assert estimate_request(8, max_tokens=None, default_output_tokens=7).output_tokens == 7
    assert estimate_request(8, max_tokens=10, n=3).output_tokens == 30
    assert estimate_request(400, max_tokens=10, embeddings=True).tokens == 100


def test_prices_per_million_tokens_in_nano_usd() -> None:
    config = make_config()
    prices = PriceTable({name: m.price for name, m in config.models.items()})
    # m2: 0.15 in, 0.60 out, 0.075 cached (USD per million tokens).
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=400)
    assert prices.cost("m2", usage) == (600 * 150 + 400 * 75 + 500 * 600)
    assert prices.cost("free", usage) == 0
    assert prices.cost("unknown", usage) == 0


def test_time_arguments() -> None:
    assert parse_span("24h") == 86400
    assert parse_span("1.5d") == 129600
    assert parse_instant("30m", 10_000, future=False) == 8_200
    assert parse_instant("2w", 0, future=True) == 1_209_600
    assert (
        parse_instant("2026-01-31", 0, future=True) == datetime(2026, 1, 31, tzinfo=UTC).timestamp()
    )
    with pytest.raises(ValueError, match="expected a span"):
        parse_instant("yesterday", 0, future=False)


def test_usage_report_formats() -> None:
    lines = [UsageLine("a", 2, 10, 5, 1, 0, 1_500_000_000, 1), UsageLine(None, 1, 3, 4, 0, 2, 7, 0)]
    table = render_usage(lines, by="caller", fmt="table").splitlines()
    assert table[0].split() == [
        "caller",
        "calls",
        "prompt",
        "completion",
        "cached",
        "reasoning",
        "errors",
        "cost_usd",
    ]
    assert table[-1].split() == ["TOTAL", "3", "13", "9", "1", "2", "1", "1.500000"]
    data = json.loads(render_usage(lines, by="model", fmt="json"))
    assert data[0]["model"] == "a"
    assert data[0]["cost_usd"] == 1.5
    assert data[1]["model"] is None
    assert data[1]["cost_usd"] == 7e-9
    csv_lines = render_usage(lines, by="key", fmt="csv").splitlines()
    assert csv_lines[0].startswith("key,calls,")
    assert csv_lines[1] == "a,2,10,5,1,0,1,1.500000"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"callers": [{"name": "a", "key": "k", "limits": {"rpm": 0}}]},
            r"callers\[0\]\.limits\.rpm: must be at least 1",
        ),
        (
            {"callers": [{"name": "a", "key": "k", "limits": {"budget": {"usd": -1}}}]},
            r"callers\[0\]\.limits\.budget\.usd: must be a positive amount",
        ),
        (
            {"callers": [{"name": "a", "key": "k", "model_limits": {"nope": {"rpm": 1}}}]},
            r"callers\[0\]\.model_limits\.nope: unknown model 'nope'",
        ),
        ({"state": "mysql://x"}, r"state: expected 'memory' or a Redis URL"),
        ({"on_state_error": "maybe"}, r"on_state_error"),
        ({"ledger": "file:///x.db"}, r"ledger: expected sqlite:///"),
        ({"keys": {"secret": "s"}}, r"keys: virtual keys are kept in the ledger database"),
        ({"ledger": "sqlite:///x.db", "admin": {"key": "a"}}, r"admin: the admin API manages"),
        ({"governance": {"state_timeout": 0}}, r"governance\.state_timeout: must be a positive"),
        (
            {"models": {"x": {"targets": [{"upstream": "mock"}], "price": {"input": -1}}}},
            r"models\.x\.price\.input: must be a price of 0 or more",
        ),
    ],
)
def test_config_errors_name_the_key(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(**sections)


def test_the_issue_config_shape_parses() -> None:
    config = make_config(
        state="redis://127.0.0.1:6379/0",
        on_state_error="open",
        ledger="postgresql://127.0.0.1:5432/test",
        admin={"key": "admin-secret"},
        keys={"secret": "key-secret"},
        callers=[
            {
                "name": "webapp",
                "key": "gw-key",
                "limits": {
                    "rpm": 600,
                    "tpm": 200000,
                    "max_streams": 20,
                    "budget": {"usd": 25, "per": "day"},
                },
                "model_limits": {"m2": {"rpm": 100}},
            }
        ],
    )
    caller = config.callers[0]
    assert caller.limits is not None
    assert caller.limits.budget is not None
    assert caller.limits.budget.usd == 25
    assert caller.model_limits["m2"].rpm == 100
    assert config.models["m2"].price is not None
    assert config.models["m2"].price.cached_input == 0.075


def test_memory_state_refuses_more_workers_only_when_limits_would_multiply() -> None:
    limited = make_config(callers=[{"name": "a", "key": "k", "limits": {"rpm": 5}}])
    with pytest.raises(
        ConfigError, match=r"--workers 2 would let each worker spend the full limit"
    ):
        check_workers(limited, 2)
    check_workers(limited, 1)
    check_workers(make_config(callers=[{"name": "a", "key": "k"}]), 4)
    check_workers(make_config(state="redis://127.0.0.1:6379/0", callers=limited.callers), 4)
