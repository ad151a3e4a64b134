"""The ledger and key store in PostgreSQL (``ledger: postgresql://...``), for fleets.

``asyncpg`` with a small pool. Rows go in with binary ``COPY`` (one round trip per batch,
no SQL text per row). The schema is created and migrated by ``aifetch ledger migrate``
(under an advisory lock, so two migrations never interleave), not by each gateway at
start: a gateway finding an older schema says so and refuses to start. A schema other
than ``public`` is chosen with ``?search_path=name`` on the URL (asyncpg sends unknown
URL parameters as server settings).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ._errors import KeyStoreError, MissingPackageError, SchemaError
from ._schema import LEDGER_COLUMNS, META_TABLE, MIGRATIONS, SCHEMA_VERSION
from ._types import KeyRecord, LedgerRow, UsageLine

try:
    import asyncpg
except ImportError:  # pragma: no cover - the postgres extra is part of the test set-up
    raise MissingPackageError(
        "ledger: postgresql://... needs the 'asyncpg' package: pip install 'aifetch[postgres]'"
    ) from None

__all__ = ["PostgresDatabase"]

_KEY_COLUMNS = (
    "name, hash, hint, models, rpm, tpm, max_streams, budget_usd, budget_per, "
    "created_at, expires_at, revoked_at"
)
GROUP_COLUMNS = {"caller": "caller", "model": "model", "key": "key_name"}
# Any fixed number: the advisory lock `aifetch ledger migrate` holds while it works.
_MIGRATE_LOCK = 0x61696665746368


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _row(row: LedgerRow) -> tuple[Any, ...]:
    return (
        datetime.fromtimestamp(row.ts, UTC),
        row.request_id,
        row.caller,
        row.key_name,
        row.model,
        row.upstream,
        row.dialect,
        row.stream,
        row.status,
        row.prompt_tokens,
        row.completion_tokens,
        row.cached_tokens,
        row.reasoning_tokens,
        row.cost_nano_usd,
        row.ttft_ms,
        row.duration_ms,
        row.error,
    )


def _key(row: Any) -> KeyRecord:
    return KeyRecord(
        name=row[0],
        hash=bytes(row[1]),
        hint=row[2],
        models=json.loads(row[3]),
        rpm=row[4],
        tpm=row[5],
        max_streams=row[6],
        budget_usd=row[7],
        budget_per=row[8],
        created_at=_epoch(row[9]) or 0.0,
        expires_at=_epoch(row[10]),
        revoked_at=_epoch(row[11]),
    )


class PostgresDatabase:
    kind = "postgresql"

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        self.url = url
        self._pool: Any = None
        self._check_schema = check_schema

    async def connect(self) -> None:
        # Bounded waits: an unreachable database fails a write (its rows are kept and
        # retried) instead of holding the writer, or a shutdown, for asyncpg's 60 s.
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=4, timeout=10, command_timeout=30
        )
        if self._check_schema:
            version = await self.schema_version()
            if version < SCHEMA_VERSION:
                await self.close()
                raise SchemaError(
                    f"the ledger database has schema version {version}, this gateway needs "
                    f"{SCHEMA_VERSION}: run `aifetch ledger migrate --config FILE` first"
                )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # ------------------------------------------------------------------ schema

    async def schema_version(self) -> int:
        async with self._pool.acquire() as conn:
            return await _version(conn)

    async def migrate(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute(META_TABLE)
            current = await _version(conn)
            for version, statements in MIGRATIONS["postgresql"]:
                if version > current:
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO aifetch_meta (name, value) VALUES ('schema', $1) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        version,
                    )
        return SCHEMA_VERSION

    # ------------------------------------------------------------------ ledger

    async def write_rows(self, rows: list[LedgerRow]) -> None:
        async with self._pool.acquire() as conn:
            await conn.copy_records_to_table(
                "aifetch_ledger", records=[_row(r) for r in rows], columns=LEDGER_COLUMNS
            )

    def _usage_sql(self, by: str) -> str:
        column = GROUP_COLUMNS[by]
        return (
            f"SELECT {column}, count(*), sum(prompt_tokens), sum(completion_tokens), "
            "sum(cached_tokens), sum(reasoning_tokens), sum(cost_nano_usd), "
            "count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL) "
            f"FROM aifetch_ledger WHERE ts >= $1 GROUP BY {column} "
            f"ORDER BY sum(cost_nano_usd) DESC, count(*) DESC, {column}"
        )

    async def usage(self, since: float, by: str) -> list[UsageLine]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._usage_sql(by), _when(since))
        return [UsageLine(r[0], *(int(v) for v in tuple(r)[1:])) for r in rows]

    async def explain_usage(self, since: float, by: str) -> str:
        """The report's plan with sequential scans priced out of the way: it shows that an
        index on ``ts`` serves the time range (tests check it)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            rows = await conn.fetch("EXPLAIN " + self._usage_sql(by), _when(since))
        return "\n".join(r[0] for r in rows)

    # ------------------------------------------------------------------ keys

    async def keys_version(self) -> int:
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT value FROM aifetch_meta WHERE name = 'keys'")
        return int(value or 0)

    async def active_keys(self) -> list[KeyRecord]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_KEY_COLUMNS} FROM aifetch_keys WHERE revoked_at IS NULL"
            )
        return [_key(r) for r in rows]

    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_KEY_COLUMNS} FROM aifetch_keys{where} ORDER BY created_at, name"
            )
        return [_key(r) for r in rows]

    async def create_key(self, record: KeyRecord) -> None:
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(
                        f"INSERT INTO aifetch_keys ({_KEY_COLUMNS}) VALUES "
                        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)",
                        record.name,
                        record.hash,
                        record.hint,
                        json.dumps(record.models),
                        record.rpm,
                        record.tpm,
                        record.max_streams,
                        record.budget_usd,
                        record.budget_per,
                        _when(record.created_at),
                        _when(record.expires_at),
                    )
                    await conn.execute(
                        "UPDATE aifetch_meta SET value = value + 1 WHERE name = 'keys'"
                    )
            except asyncpg.UniqueViolationError:
                raise KeyStoreError(f"a key named {record.name!r} exists already") from None

    async def revoke_key(self, name: str, now: float) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE aifetch_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
                _when(now),
                name,
            )
            changed: bool = status.split()[-1] != "0"
            if changed:
                await conn.execute("UPDATE aifetch_meta SET value = value + 1 WHERE name = 'keys'")
        return changed


async def _version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass('aifetch_meta') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT value FROM aifetch_meta WHERE name = 'schema'")
    return int(value or 0)
