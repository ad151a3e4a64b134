"""Virtual keys in SQLite and PostgreSQL: made once, stored as a keyed hash, seen and
revoked by every gateway within its refresh."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import asyncpg
import pytest

from aifetch.gateway import GatewayError
from aifetch.gateway.governance import Estimate, KeyStoreError
from aifetch.gateway.governance._keys import KeySpec, hash_key
from tests.governance.conftest import make_config, running

SECRET = "test-key-secret"


def _config(ledger_url: str, **extra: Any) -> Any:
    return make_config(ledger=ledger_url, keys={"secret": SECRET, "refresh": 0.2}, **extra)


async def _stored_bytes(ledger_url: str) -> bytes:
    """Everything in the keys table, as bytes (to look for a key in it)."""
    if ledger_url.startswith("sqlite:"):
        conn = sqlite3.connect(ledger_url.split(":///", 1)[1])
        try:
            rows = conn.execute("SELECT * FROM aifetch_keys").fetchall()
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(ledger_url)
        try:
            rows = [tuple(r) for r in await pg.fetch("SELECT * FROM aifetch_keys")]
        finally:
            await pg.close()
    return repr(rows).encode()


async def test_a_key_is_shown_once_and_stored_as_a_keyed_hash(ledger_url: str) -> None:
    async with running(_config(ledger_url)) as gov:
        assert gov.keys is not None
        key, record = await gov.keys.create(KeySpec(name="batch", models=["m1"], rpm=2))
        assert key.startswith("sk-aif-")
        assert len(key) == len("sk-aif-") + 43
        assert record.hash == hash_key(SECRET.encode(), key.encode())
        assert record.hint == f"sk-aif-…{key[-4:]}"
        stored = await _stored_bytes(ledger_url)
        assert key.encode() not in stored
        assert key[7:-4].encode() not in stored
        await gov.keys.refresh()
        who = gov.identify(key.encode())
        assert who is not None
        assert (who.name, who.key_name, who.scope) == ("batch", "batch", "k:batch")
        assert who.may_use("m1")
        assert not who.may_use("m2")
        # The same key hashed with another secret is a different row: no match.
        assert gov.identify(key.encode() + b"x") is None
        # Its limits apply.
        await gov.admit(who, "m1", Estimate(1, 1), stream=False)
        await gov.admit(who, "m1", Estimate(1, 1), stream=False)
        with pytest.raises(GatewayError):
            await gov.admit(who, "m1", Estimate(1, 1), stream=False)


async def test_names_are_unique_among_active_keys(ledger_url: str) -> None:
    async with running(_config(ledger_url)) as gov:
        assert gov.keys is not None
        await gov.keys.create(KeySpec(name="dup"))
        with pytest.raises(KeyStoreError, match="a key named 'dup' exists already"):
            await gov.keys.create(KeySpec(name="dup"))
        await gov.keys.revoke("dup")
        with pytest.raises(KeyStoreError, match="no active key named 'dup'"):
            await gov.keys.revoke("dup")
        # A revoked name may be given again.
        await gov.keys.create(KeySpec(name="dup"))
        listed = await gov.keys.list(include_revoked=True)
        assert [(r.name, r.revoked_at is None) for r in listed] == [("dup", False), ("dup", True)]


async def test_an_expired_key_stops_working(ledger_url: str) -> None:
    now = [time.time()]
    async with running(_config(ledger_url), clock=lambda: now[0]) as gov:
        assert gov.keys is not None
        key, _ = await gov.keys.create(KeySpec(name="temp", expires_at=now[0] + 60))
        await gov.keys.refresh()
        assert gov.identify(key.encode()) is not None
        now[0] += 61
        assert gov.identify(key.encode()) is None


async def test_a_revoked_key_stops_working_on_two_gateways_within_5s(ledger_url: str) -> None:
    config = _config(ledger_url)
    async with running(config) as first, running(config) as second:
        assert first.keys is not None
        key, _ = await first.keys.create(KeySpec(name="shared"))
        # The other gateway sees the new key by its own refresh.
        started = time.monotonic()
        while second.identify(key.encode()) is None:
            assert time.monotonic() - started < 5, "the new key was not seen within 5 s"
            await asyncio.sleep(0.05)
        while first.identify(key.encode()) is None:
            assert time.monotonic() - started < 5, "the new key was not seen within 5 s"
            await asyncio.sleep(0.05)
        assert second.keys is not None
        await second.keys.revoke("shared")
        revoked_at = time.monotonic()
        while first.identify(key.encode()) or second.identify(key.encode()):
            assert time.monotonic() - revoked_at < 5, "a revoked key still worked after 5 s"
            await asyncio.sleep(0.05)
        assert time.monotonic() - revoked_at < 5
