"""The admin API handler (``/admin/keys``): auth, create, list, revoke, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aifetch.gateway.governance import AdminApi, Governor
from tests.governance.conftest import make_config, running

ADMIN = "admin-key-for-tests"
AUTH = [(b"authorization", b"Bearer " + ADMIN.encode())]


def _config(sqlite_url: str) -> Any:
    return make_config(
        ledger=sqlite_url, keys={"secret": "s3cret", "refresh": 0.1}, admin={"key": ADMIN}
    )


async def _call(
    api: AdminApi, method: str, path: str, body: Any = None, headers: Any = None
) -> tuple[int, dict[bytes, bytes], Any]:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    status, out_headers, out = await api.handle(
        method, path, AUTH if headers is None else headers, raw
    )
    return status, dict(out_headers), json.loads(out)


@pytest.fixture
async def gov(sqlite_url: str) -> Any:
    async with running(_config(sqlite_url)) as governor:
        yield governor


async def test_create_list_use_revoke(gov: Governor) -> None:
    api = gov.admin
    assert api is not None
    status, headers, created = await _call(
        api,
        "POST",
        "/admin/keys",
        {
            "name": "ci",
            "models": ["m1"],
            "rpm": 10,
            "budget": {"usd": 5, "per": "month"},
            "expires": "30d",
        },
    )
    assert status == 201
    assert headers[b"content-type"] == b"application/json"
    key = created["key"]
    assert key.startswith("sk-aif-")
    assert created["budget"] == {"usd": 5.0, "per": "month"}
    assert created["expires_at"] > created["created_at"] + 29 * 86400
    status, _, listed = await _call(api, "GET", "/admin/keys")
    assert status == 200
    assert [k["name"] for k in listed["data"]] == ["ci"]
    assert "key" not in listed["data"][0]
    assert key not in json.dumps(listed)
    assert gov.keys is not None
    await gov.keys.refresh()
    assert gov.identify(key.encode()) is not None
    status, _, revoked = await _call(api, "DELETE", "/admin/keys/ci")
    assert (status, revoked) == (200, {"name": "ci", "revoked": True})
    await gov.keys.refresh()
    assert gov.identify(key.encode()) is None
    status, _, missing = await _call(api, "DELETE", "/admin/keys/ci")
    assert status == 404
    assert missing["error"]["code"] == "key_not_found"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([], "missing_api_key"),
        ([(b"authorization", b"Bearer wrong")], "invalid_api_key"),
        ([(b"authorization", b"Basic " + ADMIN.encode())], "missing_api_key"),
    ],
)
async def test_every_route_needs_the_admin_key(gov: Governor, headers: Any, code: str) -> None:
    assert gov.admin is not None
    for method, path in (
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("DELETE", "/admin/keys/x"),
    ):
        status, _, body = await _call(gov.admin, method, path, {"name": "x"}, headers)
        assert status == 401
        assert body["error"]["code"] == code
        assert ADMIN not in json.dumps(body)
    assert await gov.admin.keys.list() == []


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{", 400, "Invalid key request"),
        ({"name": "bad name"}, 400, "name: 1-64 characters"),
        ({"name": "a", "rpm": 0}, 400, "rpm: must be at least 1"),
        ({"name": "a", "models": ["nope"]}, 400, "unknown model 'nope'"),
        ({"name": "a", "budget": {"usd": 1, "per": "week"}}, 400, "Invalid key request"),
        ({"name": "a", "expires": "soon"}, 400, "expected a span"),
        ({"name": "a", "surprise": 1}, 400, "unknown field"),
        (b"x" * (70 * 1024), 413, "too large"),
    ],
)
async def test_bad_requests(gov: Governor, body: Any, status: int, fragment: str) -> None:
    assert gov.admin is not None
    got, _, answer = await _call(gov.admin, "POST", "/admin/keys", body)
    assert got == status
    assert fragment in answer["error"]["message"]


async def test_duplicate_names_and_unknown_routes(gov: Governor) -> None:
    api = gov.admin
    assert api is not None
    assert (await _call(api, "POST", "/admin/keys", {"name": "one"}))[0] == 201
    status, _, body = await _call(api, "POST", "/admin/keys", {"name": "one"})
    assert (status, body["error"]["code"]) == (409, "key_exists")
    status, headers, _ = await _call(api, "PUT", "/admin/keys")
    assert (status, headers[b"allow"]) == (405, b"GET, POST")
    assert (await _call(api, "GET", "/admin/other"))[0] == 404
    assert (await _call(api, "DELETE", "/admin/keys/a/b"))[0] == 404


def test_no_admin_api_without_an_admin_key(sqlite_url: str) -> None:
    config = make_config(ledger=sqlite_url, keys={"secret": "s"})
    assert Governor(config).admin is None
    assert "admin-key" not in repr(Governor(_config(sqlite_url)).admin)
