"""The test services' fall-back path: what a fresh machine without Redis and PostgreSQL on
their usual ports gets (this machine has both, so it is exercised here on purpose)."""

from __future__ import annotations

import asyncpg

from aifetch.gateway.governance._ledger import open_database
from tests.support.services import PostgresCluster, RedisServer, _accepts, _redis_pings


async def test_a_throwaway_postgres_cluster_serves_the_ledger() -> None:
    cluster = PostgresCluster().start()
    try:
        db = open_database(cluster.dsn, check_schema=False)
        await db.connect()
        try:
            assert await db.migrate() == 1
        finally:
            await db.close()
        conn = await asyncpg.connect(cluster.dsn)
        try:
            assert await conn.fetchval("SELECT current_user") == "postgres"
        finally:
            await conn.close()
    finally:
        cluster.close()
    assert not _accepts(cluster.port)


def test_a_private_redis_stops_and_starts_on_its_port() -> None:
    server = RedisServer().start()
    try:
        pid = server.pid
        server.stop()
        assert not _redis_pings(server.port)
        server.start()
        assert _redis_pings(server.port)
        assert server.pid != pid
    finally:
        server.close()
    assert not _redis_pings(server.port)
