"""Governance on the gateway's request path, against a real gateway (uvicorn in a thread)
and the scripted fake upstream: the headers of an admitted call, a refusal that never
reaches the upstream, what each way a call ends settles, virtual keys in the gate, the
admin routes, the ledger row and its request id, and start-up."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from aifetch.gateway import GatewayConfig, create_app, parse_config
from aifetch.gateway._upstream import configured_secrets
from tests.gateway.conftest import RunningGateway, config_for
from tests.gateway.helpers import CHAT, chat
from tests.governance._fleet import cli, room_in_minute
from tests.support.fake_responses import ResponsesAPI
from tests.support.fake_upstream import FakeUpstream, chat_stream, respond

KEY = "sk-path-caller-0123456789"
OTHER_KEY = "sk-path-other-0123456789"
ADMIN_KEY = "sk-path-admin-0123456789"
KEY_SECRET = "path-key-secret-0123456789"
TPM = 10_000
Serve = Callable[[GatewayConfig], RunningGateway]


@pytest.fixture(autouse=True)
def _one_minute() -> None:
    # Requests and tokens are counted per fixed UTC minute: a test that compares counts
    # across its calls must not straddle a minute's turn, when the counts start afresh.
    room_in_minute(6)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def serve() -> Iterator[Serve]:
    running: list[RunningGateway] = []

    def start(config: GatewayConfig) -> RunningGateway:
        gateway = RunningGateway(config)
        gateway.start()
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        if gateway.thread.is_alive():
            gateway.stop()


def _config(
    fake: FakeUpstream,
    *,
    limits: dict[str, Any] | None = None,
    allowed: tuple[str, ...] = ("*",),
    **sections: Any,
) -> GatewayConfig:
    """Caller "app" (``KEY``) with ``limits`` (rpm 100, tpm 10,000, one stream by
    default) on the models ``allowed``."""
    limits = limits or {"rpm": 100, "tpm": TPM, "max_streams": 1}
    callers = [{"name": "app", "key": KEY, "models": list(allowed), "limits": limits}]
    callers += sections.pop("more_callers", [])
    return config_for(fake.url, callers=callers, **sections)


def _post(gw: RunningGateway, body: dict[str, Any], key: str = KEY) -> httpx.Response:
    return httpx.post(
        gw.url + CHAT, json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def _raw_size(body: dict[str, Any]) -> int:
    # httpx sends json= compactly, as msgspec encodes it.
    return len(msgspec.json.encode(body))


def _reserved(body: dict[str, Any]) -> int:
    return -(-_raw_size(body) // 4) + body.get("max_tokens", 1024)


def _remaining_tokens(gw: RunningGateway, body: dict[str, Any]) -> int:
    """The room left before a new call, from that call's own header (which counts it)."""
    answer = _post(gw, body)
    assert answer.status_code == 200, answer.text
    return int(answer.headers["x-ratelimit-remaining-tokens"]) + _reserved(body)


# --------------------------------------------------------------------------- admitted, refused


def test_an_admitted_call_carries_the_rate_limit_headers(fake: FakeUpstream, serve: Serve) -> None:
    gw = serve(_config(fake))
    body = chat(stream=False, max_tokens=30)
    first = _post(gw, body)
    assert first.status_code == 200
    headers = first.headers
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["x-ratelimit-limit-tokens"] == str(TPM)
    assert int(headers["x-ratelimit-remaining-tokens"]) == TPM - _reserved(body)
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-aifetch-request-id" not in headers  # (only error answers, with a ledger)
    with httpx.stream(
        "POST", gw.url + CHAT, json=chat(), headers={"authorization": f"Bearer {KEY}"}
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "98"
        assert b"".join(streamed.iter_raw()).endswith(b"data: [DONE]\n\n")


def test_a_refused_call_never_reaches_the_upstream(fake: FakeUpstream, serve: Serve) -> None:
    gw = serve(_config(fake, limits={"rpm": 1, "tpm": TPM}))
    assert _post(gw, chat(stream=False)).status_code == 200
    refused = _post(gw, chat(stream=False))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    wait = int(refused.headers["retry-after-ms"]) / 1000
    assert 0 < wait <= 60
    assert int(refused.headers["retry-after"]) >= wait
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake.requests) == 1


def test_a_spent_budget_is_insufficient_quota_until_the_day_ends(
    fake: FakeUpstream, serve: Serve
) -> None:
    models = {"gpt": {"targets": [{"upstream": "fake", "model": "fake-model"}],
                      "price": {"input": 1000, "output": 1000}}}  # fmt: skip
    # A call reserving ~1,050 tokens at 1000 USD per million: ~1 USD, over a 0.5 budget.
    gw = serve(_config(fake, limits={"budget": {"usd": 0.5}}, models=models))
    refused = _post(gw, chat(stream=False))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    left_today = 86400 - time.time() % 86400
    assert abs(int(refused.headers["retry-after"]) - left_today) <= 2
    assert fake.requests == []


# --------------------------------------------------------------------------- settlement


def test_a_call_that_fails_before_any_answer_gives_its_reservation_back(
    fake: FakeUpstream, serve: Serve
) -> None:
    gw = serve(_config(fake, allowed=("gpt",)))
    probe = chat(stream=False, max_tokens=10)
    assert _remaining_tokens(gw, probe) == TPM
    # Refused after admission by the dispatcher (403), and an upstream 400 passed on.
    not_allowed = _post(gw, chat("mock-gpt", stream=False, max_tokens=500))
    assert not_allowed.json()["error"]["code"] == "model_not_allowed"
    fake.enqueue(respond(400, {"error": {"message": "bad", "type": "invalid_request_error"}}))
    assert _post(gw, chat(stream=False, max_tokens=700)).status_code == 400
    used_by_probe = TPM - _remaining_tokens(gw, probe)
    # Only the first probe's real usage counts: the two failures gave theirs back.
    assert 0 < used_by_probe < _reserved(probe)


def _cut_after_first_event(gw: RunningGateway, body: dict[str, Any]) -> None:
    with httpx.stream(
        "POST", gw.url + CHAT, json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=10
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            if b"data:" in chunk:
                break
    # Leaving the block closes the connection: the caller is gone mid-stream.


@pytest.fixture
def access_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    caplog.set_level(logging.INFO, logger="aifetch.gateway.access")
    records: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(msgspec.json.decode(record.getMessage()))

    handler = Collect()
    logger = logging.getLogger("aifetch.gateway.access")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_stream_cut_short_and_drained_settles_what_it_used(
    fake: FakeUpstream, serve: Serve, access_records: list[dict[str, Any]]
) -> None:
    drained = {"targets": [{"upstream": "fake", "model": "fake-model"}], "on_disconnect": "drain"}
    gw = serve(_config(fake, models={"gpt": drained}))
    # The gateway notices a stream's caller leaving at a sweep over the calls in flight
    # (within 2 × WATCH_AFTER): the stream lasts well past that, so the cut is seen
    # before the upstream's answer ends, on a loaded machine too.
    fake.enqueue(chat_stream(content="one two three four five six", delay=0.2))
    body = chat(max_tokens=400)
    _cut_after_first_event(gw, body)
    # The gateway read the stream to its end for its usage, then settled.
    _wait_for(lambda: len(access_records) == 1)
    (cut,) = access_records
    assert cut["error"] == "client_closed"
    used = cut["prompt_tokens"] + cut["completion_tokens"]
    probe = chat(stream=False, max_tokens=10)
    assert TPM - _remaining_tokens(gw, probe) == used


def test_a_stream_cut_short_frees_its_slot_and_keeps_its_reservation_when_unreported(
    fake: FakeUpstream, serve: Serve, access_records: list[dict[str, Any]]
) -> None:
    gw = serve(_config(fake))
    fake.enqueue(chat_stream(content="one two three four five six", delay=0.2))
    body = chat(max_tokens=400)
    _cut_after_first_event(gw, body)
    _wait_for(lambda: len(access_records) == 1)
    assert access_records[0]["error"] == "client_closed"
    # max_streams is 1: the next stream is admitted, so the slot came back; the cut
    # stream's usage never arrived, so its reservation stands as what it cost.
    with httpx.stream(
        "POST", gw.url + CHAT, json=chat(max_tokens=10), headers={"authorization": f"Bearer {KEY}"}
    ) as again:
        assert again.status_code == 200
        remaining = int(again.headers["x-ratelimit-remaining-tokens"])
        b"".join(again.iter_raw())
    assert remaining == TPM - _reserved(body) - _reserved(chat(max_tokens=10))


# --------------------------------------------------------------------------- keys and admin


def _keyed(fake: FakeUpstream, tmp_path: Path, **sections: Any) -> GatewayConfig:
    return _config(
        fake,
        ledger=f"sqlite:///{tmp_path / 'usage.db'}",
        keys={"secret": KEY_SECRET, "refresh": 0.1},
        admin={"key": ADMIN_KEY},
        **sections,
    )


def _admin(gw: RunningGateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kwargs)


def test_a_virtual_key_is_a_caller_with_its_own_models_and_limits(
    fake: FakeUpstream, serve: Serve, tmp_path: Path
) -> None:
    gw = serve(_keyed(fake, tmp_path))
    made = _admin(gw, "POST", "/admin/keys", json={"name": "team", "models": ["gpt"], "rpm": 7})
    assert made.status_code == 201
    key = made.json()["key"]
    _wait_for(lambda: _post(gw, chat(stream=False), key).status_code == 200)
    answer = _post(gw, chat(stream=False), key)
    assert answer.headers["x-ratelimit-limit-requests"] == "7"
    assert _post(gw, chat("mock-gpt", stream=False), key).json()["error"]["code"] == (
        "model_not_allowed"
    )
    listed = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {key}"})
    assert [m["id"] for m in listed.json()["data"]] == ["gpt"]
    assert _admin(gw, "DELETE", "/admin/keys/team").json() == {"name": "team", "revoked": True}
    _wait_for(lambda: _post(gw, chat(stream=False), key).status_code == 401)
    # The config caller is unaffected.
    assert _post(gw, chat(stream=False)).status_code == 200


def test_the_admin_routes_check_the_admin_key_before_reading_a_body(
    fake: FakeUpstream, serve: Serve, tmp_path: Path
) -> None:
    gw = serve(_keyed(fake, tmp_path))
    # A stranger announces a large body and sends none of it: answered at once.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(
            b"POST /admin/keys HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer " + KEY.encode()
            + b"\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n"
        )  # fmt: skip
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 401")
    assert b"invalid_api_key" in head or b"invalid_api_key" in sock.recv(65536)
    assert httpx.get(gw.url + "/admin/keys").json()["error"]["code"] == "missing_api_key"
    assert _admin(gw, "PUT", "/admin/keys").status_code == 405
    assert _admin(gw, "GET", "/admin/keys/a/b").json()["error"]["code"] == "unknown_url"
    too_big = _admin(gw, "POST", "/admin/keys", content=b"{" + b" " * 70_000 + b"}")
    assert too_big.status_code == 413
    listed = _admin(gw, "GET", "/admin/keys")
    assert listed.json() == {"object": "list", "data": []}


def test_without_an_admin_key_there_are_no_admin_routes(fake: FakeUpstream, serve: Serve) -> None:
    gw = serve(_config(fake))
    answer = httpx.get(gw.url + "/admin/keys", headers={"authorization": f"Bearer {KEY}"})
    assert answer.status_code == 404


def test_the_admin_key_and_the_key_secret_are_scrubbed_secrets(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    secrets = configured_secrets(_keyed(fake, tmp_path))
    text = f"echo {ADMIN_KEY} and {KEY_SECRET}"
    scrubbed = secrets.scrub_text(text)
    assert ADMIN_KEY not in scrubbed
    assert KEY_SECRET not in scrubbed


def test_virtual_keys_share_each_upstream_fairly(fake: FakeUpstream, tmp_path: Path) -> None:
    # One config caller alone may use every connection; with virtual keys, each caller
    # gets a share.
    alone = create_app(_config(fake))
    keyed = create_app(_keyed(fake, tmp_path))
    size = alone.config.upstreams["fake"].max_connections
    assert alone.upstreams["fake"].slots.per_caller == size
    assert keyed.upstreams["fake"].slots.per_caller == size // 2


# --------------------------------------------------------------------------- the ledger row


def test_every_model_call_leaves_a_ledger_row_named_by_its_request_id(
    fake: FakeUpstream, serve: Serve, tmp_path: Path, access_records: list[dict[str, Any]]
) -> None:
    db = tmp_path / "usage.db"
    other = {"name": "other", "key": OTHER_KEY}
    gw = serve(_config(fake, limits={"rpm": 2}, ledger=f"sqlite:///{db}", more_callers=[other]))
    plain = _post(gw, chat(stream=False))
    with httpx.stream(
        "POST", gw.url + CHAT, json=chat(), headers={"authorization": f"Bearer {KEY}"}
    ) as streamed:
        streamed_headers = streamed.headers
        b"".join(streamed.iter_raw())
    refused = _post(gw, chat(stream=False))
    unlimited = _post(gw, chat(stream=False), OTHER_KEY)
    no_model = httpx.post(gw.url + CHAT, content=b"{}", headers={"authorization": f"Bearer {KEY}"})
    gw.stop()  # a graceful shutdown writes every row

    # The access log names each call's id; an error answer carries it, a success does not.
    ids = [r.get("request_id") for r in access_records]
    assert ids[4] is None  # no body read as a model call: no call, no row, no id
    assert len(set(ids[:4])) == 4
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids[:4])
    assert refused.status_code == 429
    assert refused.headers["x-aifetch-request-id"] == ids[2]
    for answer in (plain.headers, streamed_headers, unlimited.headers, no_model.headers):
        assert "x-aifetch-request-id" not in answer
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM aifetch_ledger")}
    assert set(rows) == set(ids[:4])
    row = rows[ids[0]]
    usage = plain.json()["usage"]
    assert (row["caller"], row["key_name"], row["model"], row["upstream"]) == (
        "app", None, "gpt", "fake"
    )  # fmt: skip
    assert (row["dialect"], row["stream"], row["status"], row["error"]) == ("openai", 0, 200, None)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage["prompt_tokens"], usage["completion_tokens"]
    )  # fmt: skip
    assert row["ttft_ms"] is None
    assert row["duration_ms"] > 0
    assert abs(row["ts"] - time.time()) < 60
    streamed_row = rows[ids[1]]
    assert streamed_row["stream"] == 1
    assert streamed_row["ttft_ms"] is not None
    assert 0 < streamed_row["ttft_ms"] <= streamed_row["duration_ms"]
    assert (rows[ids[2]]["status"], rows[ids[2]]["error"]) == (429, "rate_limit_exceeded")
    assert rows[ids[2]]["upstream"] is None
    assert rows[ids[3]]["caller"] == "other"


def test_the_dialect_routes_are_limited_and_in_the_ledger_as_their_dialect(
    fake: FakeUpstream, serve: Serve, tmp_path: Path
) -> None:
    """/v1/messages (the caller's key as x-api-key, as the anthropic SDK sends it) and
    /v1/responses count against the same limits as chat, after their dialect stage: a
    Messages call is admitted by its max_tokens, refused in Anthropic's shape, and each
    call's ledger row names its dialect."""
    db = tmp_path / "usage.db"
    gw = serve(_config(fake, limits={"rpm": 2, "tpm": TPM}, ledger=f"sqlite:///{db}"))
    messages = {
        "model": "gpt",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    first = httpx.post(gw.url + "/v1/messages", json=messages, headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["type"] == "message"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    # The estimate read the Messages request's own max_tokens, not the 1,024 default.
    reserved = TPM - int(first.headers["x-ratelimit-remaining-tokens"])
    assert 40 < reserved < 1024
    responses = {"model": "gpt", "input": "hi"}
    second = httpx.post(gw.url + "/v1/responses", json=responses, headers=headers, timeout=10)
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    refused = httpx.post(gw.url + "/v1/messages", json=messages, headers=headers, timeout=10)
    assert refused.status_code == 429
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    gw.stop()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT dialect, status FROM aifetch_ledger ORDER BY rowid").fetchall()
    assert rows[0] == ("anthropic", 200)
    assert rows[2] == ("anthropic", 429)
    assert rows[1][0] == "openai"


@pytest.fixture
def responses_api() -> Iterator[FakeUpstream]:
    with FakeUpstream(default=ResponsesAPI()) as upstream:
        yield upstream


def _create_response(gw: RunningGateway, body: dict[str, Any], key: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(gw.url + "/v1/responses", json=body, headers=headers, timeout=10)


def test_a_responses_call_reserves_its_max_output_tokens(
    responses_api: FakeUpstream, serve: Serve
) -> None:
    """The Responses API names its output cap max_output_tokens: the estimate reads it,
    so concurrent long Responses calls cannot pass a token limit together."""
    gw = serve(_config(responses_api))
    body = {"model": "gpt", "input": "hi", "max_output_tokens": 3000}
    answer = _create_response(gw, body, KEY)
    assert answer.status_code == 200, answer.text
    reserved = TPM - int(answer.headers["x-ratelimit-remaining-tokens"])
    assert reserved == -(-_raw_size(body) // 4) + 3000  # not the 1,024 default


def test_a_virtual_key_named_as_a_config_caller_gets_none_of_its_responses(
    responses_api: FakeUpstream, serve: Serve, tmp_path: Path
) -> None:
    """A response belongs to the identity that made it: a virtual key that shares the
    config caller's name can neither read it nor continue from it."""
    gw = serve(_keyed(responses_api, tmp_path))
    made = _admin(gw, "POST", "/admin/keys", json={"name": "app"})  # the config caller's name
    assert made.status_code == 201
    namesake = made.json()["key"]
    hello = {"model": "gpt", "input": "hello"}
    _wait_for(lambda: _create_response(gw, hello, namesake).status_code == 200)
    mine = _create_response(gw, {"model": "gpt", "input": "hi"}, KEY).json()["id"]
    headers = {"authorization": f"Bearer {namesake}"}
    theirs = httpx.get(f"{gw.url}/v1/responses/{mine}", headers=headers, timeout=10)
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "response_not_found"
    continued = _create_response(
        gw, {"model": "gpt", "input": "more", "previous_response_id": mine}, namesake
    )
    assert continued.status_code == 400
    assert continued.json()["error"]["code"] == "previous_response_not_found"
    own = httpx.get(
        f"{gw.url}/v1/responses/{mine}", headers={"authorization": f"Bearer {KEY}"}, timeout=10
    )
    assert own.status_code == 200
    assert own.json()["id"] == mine


def test_a_ledger_that_cannot_start_stops_the_gateway_with_the_reason(
    pg_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "upstreams: {mock: {kind: mock}}\n"
        "models: {m: {targets: [{upstream: mock}]}}\n"
        f"ledger: '{pg_url}'\n"  # a schema that was never migrated
    )
    done = cli("serve", "--config", str(config), "--port", "0", timeout=60)
    assert done.returncode != 0
    assert "aifetch ledger migrate" in done.stderr
    assert "listening on" not in done.stderr


def test_governance_metrics_are_on_metrics_only_when_configured(
    fake: FakeUpstream, serve: Serve
) -> None:
    plain = serve(config_for(fake.url))
    governed = serve(_config(fake, limits={"rpm": 1}))
    assert "aifetch_gateway_limit_refusals" not in httpx.get(plain.url + "/metrics").text
    _post(governed, chat(stream=False))
    _post(governed, chat(stream=False))
    text = httpx.get(governed.url + "/metrics").text
    assert 'aifetch_gateway_limit_refusals_total{kind="requests"} 1.0' in text


def test_the_default_gateway_has_no_governance_on_its_path() -> None:
    # What `aifetch serve` runs with no config (the README's run command): nothing to
    # connect to, no stage of governance per request, no governance metrics.
    from aifetch.gateway import default_config
    from aifetch.gateway._limits import Limits

    app = create_app(default_config())
    assert not app.governor.enabled
    assert app.limits is None
    assert app.ledger is None
    assert not app.auth.governed
    from aifetch.gateway._routes import Router

    def model_path(gateway: Any) -> list[type]:
        router = gateway.handle
        assert isinstance(router, Router)
        stage, seen = router.routes[CHAT].handler, []
        while hasattr(stage, "next"):
            seen.append(type(stage))
            stage = stage.next
        return [*seen, type(stage)]

    assert Limits not in model_path(app)
    governed = create_app(parse_config({
        "upstreams": {"mock": {"kind": "mock"}},
        "models": {"m": {"targets": [{"upstream": "mock"}]}},
        "callers": [{"name": "a", "key": "k", "limits": {"rpm": 1}}],
    }))  # fmt: skip
    assert Limits in model_path(governed)
    assert b"aifetch_gateway_limit_refusals" not in app.metrics.render()
