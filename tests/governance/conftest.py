"""Fixtures for governance: the shared Redis and PostgreSQL (tests/support/services.py),
each test with its own Redis key prefix or PostgreSQL schema, removed after it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from aifetch.gateway import GatewayConfig, parse_config
from aifetch.gateway.governance import Governor
from tests.governance._fleet import Backend
from tests.support import services

MODELS = {
    "m1": {"targets": [{"upstream": "mock"}], "price": {"input": 1.0, "output": 2.0}},
    "m2": {
        "targets": [{"upstream": "mock"}],
        "price": {"input": 0.15, "output": 0.6, "cached_input": 0.075},
    },
    "free": {"targets": [{"upstream": "mock"}]},
}


def make_config(**sections: Any) -> GatewayConfig:
    """A config with a mock upstream and models m1, m2 (priced) and free; ``sections``
    are top-level keys."""
    raw: dict[str, Any] = {"upstreams": {"mock": {"kind": "mock"}}, "models": MODELS}
    raw.update(sections)
    return parse_config(raw, env={})


@asynccontextmanager
async def running(config: GatewayConfig, **kwargs: Any) -> AsyncIterator[Governor]:
    governor = Governor(config, **kwargs)
    await governor.start()
    try:
        yield governor
    finally:
        await governor.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return services.redis_url()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"aifetch-test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config sections for each state backend (Redis with this test's own prefix)."""
    if request.param == "memory":
        return {"state": "memory"}
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return {"state": url, "governance": {"prefix": prefix}}


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return services.postgres_dsn()


async def _pg(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a schema of this test's own."""
    schema = f"t_{secrets.token_hex(6)}"
    asyncio.run(_pg(pg_dsn, f"CREATE SCHEMA {schema}"))
    yield f"{pg_dsn}?search_path={schema}"
    asyncio.run(_pg(pg_dsn, f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'usage.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """Each ledger database in turn (PostgreSQL migrated, as `aifetch ledger migrate` does)."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    url = str(request.getfixturevalue("pg_url"))
    from aifetch.gateway.governance._ledger import open_database

    async def migrate() -> None:
        db = open_database(url, check_schema=False)
        await db.connect()
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(migrate())
    return url


@pytest.fixture(params=["redis+postgresql", "memory+sqlite"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Where a fleet of gateways keeps its state and ledger: two processes on Redis and
    PostgreSQL (migrated by the fleet's start), or one on memory and SQLite."""
    if request.param == "memory+sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
        return Backend(request.param, {"state": "memory", "ledger": url}, processes=1)
    redis_url = str(request.getfixturevalue("redis_url"))
    prefix = str(request.getfixturevalue("redis_prefix"))
    sections = {
        "state": redis_url,
        "ledger": str(request.getfixturevalue("pg_url")),
        "governance": {"prefix": prefix},
    }
    return Backend(
        request.param, sections, processes=2, redis_url=redis_url, prefix=prefix, postgres=True
    )
