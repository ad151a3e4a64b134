"""Virtual keys: made here, stored as a keyed hash, found by that hash in a snapshot.

- A key is ``sk-aif-`` and 43 URL-safe characters (32 random bytes). The store keeps
  ``HMAC-SHA256(keys.secret, key)`` and a short hint (``sk-aif-…WxYz``): without the
  secret, a copy of the table yields no key and cannot even test a guess.
- Each gateway keeps the active keys in a dict from that hash to an ``Identity`` and
  refreshes it every ``keys.refresh`` seconds, reloading only when the store's ``keys``
  version moved; a new or revoked key is seen within one refresh, with no restart.
- A lookup hashes the presented key (about a microsecond) and probes the dict. What the
  probe's timing could reveal is about the HMAC of a guess, which says nothing about any
  real key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable

import msgspec

from ._errors import KeyStoreError
from ._ledger import Database
from ._types import Identity, KeyRecord, Period

__all__ = ["KEY_PREFIX", "KeyRing", "KeySpec", "check_spec", "hash_key", "new_key"]

log = logging.getLogger("aifetch.gateway.governance")

KEY_PREFIX = "sk-aif-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: bytes, key: bytes) -> bytes:
    return hmac.new(secret, key, hashlib.sha256).digest()


def _hint(key: str) -> str:
    return f"{KEY_PREFIX}…{key[-4:]}"


class KeySpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a new key may do (the admin API's POST body, the CLI's options)."""

    name: str
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    budget_usd: float | None = None
    budget_per: Period = "day"
    expires_at: float | None = None


def check_spec(spec: KeySpec, known_models: set[str] | None = None) -> None:
    """Raise ValueError with a message naming the field that is wrong."""
    if not _NAME.fullmatch(spec.name):
        raise ValueError(
            "name: 1-64 characters of letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    for field in ("rpm", "tpm", "max_streams"):
        value = getattr(spec, field)
        if value is not None and value < 1:
            raise ValueError(f"{field}: must be at least 1")
    if spec.budget_usd is not None and not spec.budget_usd > 0:
        raise ValueError("budget: must be a positive amount of USD")
    if not spec.models:
        raise ValueError("models: give at least one model, or '*' for all")
    if known_models is not None:
        for model in spec.models:
            if model != "*" and model not in known_models:
                raise ValueError(f"models: unknown model {model!r}")
    if spec.expires_at is not None and spec.expires_at <= time.time():
        raise ValueError("expires: must be in the future")


class KeyRing:
    """The virtual keys of one gateway (or one CLI run): create, list, revoke in the
    store; identify against the refreshed snapshot."""

    def __init__(
        self,
        db: Database,
        secret: str,
        *,
        refresh: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self._secret = secret.encode()
        self.refresh_interval = refresh
        self._clock = clock
        self._by_hash: dict[bytes, Identity] = {}
        self._version = -1
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def __repr__(self) -> str:
        return f"KeyRing({len(self._by_hash)} keys)"

    # ------------------------------------------------------------------ lookup

    def identify(self, key: bytes) -> Identity | None:
        who = self._by_hash.get(hash_key(self._secret, key))
        if who is None:
            return None
        if who.expires_at is not None and who.expires_at <= self._clock():
            return None
        return who

    def __len__(self) -> int:
        return len(self._by_hash)

    async def refresh(self) -> bool:
        """Reload the snapshot if the store changed; True when it did."""
        version = await self.db.keys_version()
        if version == self._version:
            return False
        records = await self.db.active_keys()
        self._by_hash = {record.hash: record.identity() for record in records}
        self._version = version
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="aifetch-keys")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:
                # Keep serving the last snapshot; say so once per outage.
                if not self._failing:
                    self._failing = True
                    log.error("could not refresh virtual keys (%s); keeping the last ones", exc)
                continue
            if self._failing:
                self._failing = False
                log.warning("virtual keys refresh again")

    # ------------------------------------------------------------------ management

    async def create(self, spec: KeySpec) -> tuple[str, KeyRecord]:
        """A new key (returned once, never stored) and its record."""
        key = new_key()
        record = KeyRecord(
            name=spec.name,
            hash=hash_key(self._secret, key.encode()),
            hint=_hint(key),
            models=list(spec.models),
            rpm=spec.rpm,
            tpm=spec.tpm,
            max_streams=spec.max_streams,
            budget_usd=spec.budget_usd,
            budget_per=spec.budget_per if spec.budget_usd is not None else None,
            created_at=self._clock(),
            expires_at=spec.expires_at,
        )
        await self.db.create_key(record)
        return key, record

    async def revoke(self, name: str) -> None:
        if not await self.db.revoke_key(name, self._clock()):
            raise KeyStoreError(f"no active key named {name!r}")

    async def list(self, include_revoked: bool = False) -> list[KeyRecord]:
        return await self.db.list_keys(include_revoked)
