"""The admin HTTP API for virtual keys, as one async handler independent of ASGI:

    GET    /admin/keys          → 200 {"object": "list", "data": [key, ...]}
    POST   /admin/keys          → 201 key + "key" (the only time it is shown)
    DELETE /admin/keys/{name}   → 200 {"name": ..., "revoked": true}

Every call needs ``Authorization: Bearer <admin.key>`` (compared in constant time).
A POST body is ``{"name", "models", "rpm", "tpm", "max_streams",
"budget": {"usd", "per"}, "expires": "30d" | ISO date}``, all but ``name`` optional.
Errors are OpenAI-shaped like the rest of the gateway.
"""

from __future__ import annotations

import hmac
import time
from typing import Any, Literal

import msgspec

from .. import _codes as codes
from .._errors import GatewayError
from ._errors import KeyStoreError
from ._keys import KeyRing, KeySpec, check_spec
from ._timearg import parse_instant
from ._types import KeyRecord

__all__ = ["MAX_ADMIN_BODY", "AdminApi", "key_json"]

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]

MAX_ADMIN_BODY = 64 * 1024
_JSON: Headers = [(b"content-type", b"application/json")]
_PATH = "/admin/keys"
_encode = msgspec.json.Encoder().encode


class _Budget(msgspec.Struct, forbid_unknown_fields=True):
    usd: float
    per: Literal["day", "month"] = "day"


class _CreateBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    budget: _Budget | None = None
    expires: str | None = None


def key_json(record: KeyRecord) -> dict[str, Any]:
    """A key as the API and ``aifetch keys list --format json`` show it (no hash)."""
    budget = None
    if record.budget_usd is not None:
        budget = {"usd": record.budget_usd, "per": record.budget_per or "day"}
    return {
        "name": record.name,
        "hint": record.hint,
        "models": record.models,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "max_streams": record.max_streams,
        "budget": budget,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
    }


def _error(error: GatewayError) -> Answer:
    headers = _JSON + [(k.encode(), v.encode()) for k, v in error.headers]
    return error.status, headers, error.body()


class AdminApi:
    """``handle`` answers one admin request; mount it at ``/admin/`` on the route table."""

    def __init__(self, admin_key: str, keys: KeyRing, models: set[str]) -> None:
        self._admin_key = admin_key.encode()
        self.keys = keys
        self._models = models

    def __repr__(self) -> str:
        return "AdminApi()"  # never the admin key

    async def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Answer:
        """``(status, headers, body)`` for one request; ``path`` without any query."""
        try:
            self.authorize(headers)
            if path == _PATH:
                if method == "GET":
                    return await self._list()
                if method == "POST":
                    return await self._create(body)
                raise _not_allowed("GET, POST")
            if path.startswith(_PATH + "/") and "/" not in path[len(_PATH) + 1 :]:
                if method == "DELETE":
                    return await self._revoke(path[len(_PATH) + 1 :])
                raise _not_allowed("DELETE")
            raise codes.UNKNOWN_URL(f"Unknown admin route {path}.")
        except GatewayError as exc:
            return _error(exc)

    def authorize(self, headers: Headers) -> None:
        """Raise the 401 ``GatewayError`` unless ``headers`` carry the admin key (the
        gateway asks before it reads a body)."""
        presented = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
        if not presented:
            raise codes.MISSING_API_KEY("The admin API needs 'Authorization: Bearer <admin key>'.")
        if not hmac.compare_digest(presented, self._admin_key):
            raise codes.INVALID_API_KEY("Incorrect admin key provided.")

    async def _list(self) -> Answer:
        records = await self.keys.list()
        data = [key_json(record) for record in records]
        return 200, _JSON, _encode({"object": "list", "data": data})

    async def _create(self, body: bytes) -> Answer:
        if len(body) > MAX_ADMIN_BODY:
            raise codes.REQUEST_TOO_LARGE("The request body is too large.")
        try:
            request = msgspec.json.decode(body, type=_CreateBody)
            expires = (
                None
                if request.expires is None
                else parse_instant(request.expires, time.time(), future=True)
            )
            spec = KeySpec(
                name=request.name,
                models=request.models,
                rpm=request.rpm,
                tpm=request.tpm,
                max_streams=request.max_streams,
                budget_usd=None if request.budget is None else request.budget.usd,
                budget_per="day" if request.budget is None else request.budget.per,
                expires_at=expires,
            )
            check_spec(spec, self._models)
        except (msgspec.DecodeError, ValueError) as exc:
            raise codes.INVALID_KEY_REQUEST(f"Invalid key request: {exc}") from None
        try:
            key, record = await self.keys.create(spec)
        except KeyStoreError as exc:
            raise codes.KEY_EXISTS(str(exc)) from None
        return 201, _JSON, _encode({**key_json(record), "key": key})

    async def _revoke(self, name: str) -> Answer:
        try:
            await self.keys.revoke(name)
        except KeyStoreError as exc:
            raise codes.KEY_NOT_FOUND(str(exc)) from None
        return 200, _JSON, _encode({"name": name, "revoked": True})


def _not_allowed(allow: str) -> GatewayError:
    return codes.METHOD_NOT_ALLOWED("Method not allowed.", headers=[("allow", allow)])
