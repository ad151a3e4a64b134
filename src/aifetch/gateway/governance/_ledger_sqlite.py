"""The ledger and key store in SQLite (``ledger: sqlite:///path``), the embedded default.

One connection, owned by one thread: every operation is handed to that thread and
awaited, so the event loop never blocks on disk and SQLite never sees two threads. WAL
mode lets readers (``aifetch usage``, another worker's key refresh) run while it writes;
``synchronous=NORMAL`` is durable across a process crash in WAL mode (a power cut can
lose the last commits), which suits a usage log written in batches. The schema is
created or migrated on connect: one machine has no migration step to forget.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from ._errors import GovernanceError, KeyStoreError
from ._schema import META_TABLE, MIGRATIONS, SCHEMA_VERSION
from ._types import KeyRecord, LedgerRow, UsageLine

__all__ = ["SqliteDatabase", "sqlite_path"]

_T = TypeVar("_T")
_KEY_COLUMNS = (
    "name, hash, hint, models, rpm, tpm, max_streams, budget_usd, budget_per, "
    "created_at, expires_at, revoked_at"
)
# Columns in the order of LedgerRow's fields, so a row's values are
# ``msgspec.structs.astuple(row)`` (one C call; a tuple built field by field in Python was
# ~5k instructions a row). A bool binds as SQLite's integer 0 or 1.
_ROW_FIELDS = LedgerRow.__struct_fields__
_ONE_ROW = f"({', '.join('?' for _ in _ROW_FIELDS)})"
_INSERT_ROW = f"INSERT INTO aifetch_ledger ({', '.join(_ROW_FIELDS)}) VALUES {_ONE_ROW}"
# Rows per INSERT statement: one statement of many rows costs SQLite ~25% less per row
# than executemany's one step per row (850 parameters: under SQLite's oldest cap, 999).
_ROWS_PER_INSERT = 50
_INSERT_ROWS = (
    f"INSERT INTO aifetch_ledger ({', '.join(_ROW_FIELDS)}) "
    f"VALUES {', '.join([_ONE_ROW] * _ROWS_PER_INSERT)}"
)
GROUP_COLUMNS = {"caller": "caller", "model": "model", "key": "key_name"}


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/usage.db`` → ``rel/usage.db``; ``sqlite:////abs/usage.db`` →
    ``/abs/usage.db`` (the form SQLAlchemy uses)."""
    return url.split(":///", 1)[1]


def _key(row: tuple[Any, ...]) -> KeyRecord:
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
        created_at=row[9],
        expires_at=row[10],
        revoked_at=row[11],
    )


class SqliteDatabase:
    kind = "sqlite"

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aifetch-ledger")
        self._conn: sqlite3.Connection | None = None

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        def call() -> _T:
            if self._conn is None:
                raise RuntimeError("the ledger database is not open")
            return fn(self._conn)

        return asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def connect(self) -> None:
        def open_() -> None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise GovernanceError(
                    f"cannot open the ledger database {self.path}: {exc}"
                ) from None
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Another process (a second worker, `aifetch usage`) may hold the write lock.
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn

        await asyncio.get_running_loop().run_in_executor(self._thread, open_)
        await self.migrate()

    async def close(self) -> None:
        def close_() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close_)
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------------ schema

    async def schema_version(self) -> int:
        return await self._run(_version)

    async def migrate(self) -> int:
        def migrate_(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(META_TABLE)
                current = _version(conn)
                for version, statements in MIGRATIONS["sqlite"]:
                    if version > current:
                        for statement in statements:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO aifetch_meta (name, value) VALUES ('schema', ?) "
                            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                            (version,),
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return SCHEMA_VERSION

        return await self._run(migrate_)

    # ------------------------------------------------------------------ ledger

    async def write_rows(self, rows: list[LedgerRow]) -> None:
        astuple = msgspec.structs.astuple
        values = [astuple(row) for row in rows]

        def write(conn: sqlite3.Connection) -> None:
            whole = len(values) - len(values) % _ROWS_PER_INSERT
            flat = itertools.chain.from_iterable
            conn.execute("BEGIN")
            try:
                for start in range(0, whole, _ROWS_PER_INSERT):
                    part = values[start : start + _ROWS_PER_INSERT]
                    conn.execute(_INSERT_ROWS, list(flat(part)))
                conn.executemany(_INSERT_ROW, values[whole:])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(write)

    async def usage(self, since: float, by: str) -> list[UsageLine]:
        column = GROUP_COLUMNS[by]
        query = (
            f"SELECT {column}, count(*), sum(prompt_tokens), sum(completion_tokens), "
            "sum(cached_tokens), sum(reasoning_tokens), sum(cost_nano_usd), "
            "sum(CASE WHEN status >= 400 OR error IS NOT NULL THEN 1 ELSE 0 END) "
            f"FROM aifetch_ledger WHERE ts >= ? GROUP BY {column} "
            f"ORDER BY sum(cost_nano_usd) DESC, count(*) DESC, {column}"
        )

        def read(conn: sqlite3.Connection) -> list[UsageLine]:
            return [UsageLine(*row) for row in conn.execute(query, (since,)).fetchall()]

        return await self._run(read)

    async def explain_usage(self, since: float, by: str) -> str:
        """SQLite's query plan for the report (tests check it uses the time index)."""
        column = GROUP_COLUMNS[by]
        query = f"EXPLAIN QUERY PLAN SELECT {column}, count(*) FROM aifetch_ledger "
        query += f"WHERE ts >= ? GROUP BY {column}"

        def read(conn: sqlite3.Connection) -> str:
            return "\n".join(str(r[-1]) for r in conn.execute(query, (since,)).fetchall())

        return await self._run(read)

    # ------------------------------------------------------------------ keys

    async def keys_version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM aifetch_meta WHERE name = 'keys'").fetchone()
            return int(row[0]) if row else 0

        return await self._run(read)

    async def active_keys(self) -> list[KeyRecord]:
        def read(conn: sqlite3.Connection) -> list[KeyRecord]:
            sql = f"SELECT {_KEY_COLUMNS} FROM aifetch_keys WHERE revoked_at IS NULL"
            return [_key(row) for row in conn.execute(sql).fetchall()]

        return await self._run(read)

    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"

        def read(conn: sqlite3.Connection) -> list[KeyRecord]:
            sql = f"SELECT {_KEY_COLUMNS} FROM aifetch_keys{where} ORDER BY created_at, name"
            return [_key(row) for row in conn.execute(sql).fetchall()]

        return await self._run(read)

    async def create_key(self, record: KeyRecord) -> None:
        values = (
            record.name,
            record.hash,
            record.hint,
            json.dumps(record.models),
            record.rpm,
            record.tpm,
            record.max_streams,
            record.budget_usd,
            record.budget_per,
            record.created_at,
            record.expires_at,
            None,
        )

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"INSERT INTO aifetch_keys ({_KEY_COLUMNS}) VALUES "
                    f"({', '.join('?' for _ in values)})",
                    values,
                )
                conn.execute("UPDATE aifetch_meta SET value = value + 1 WHERE name = 'keys'")
                conn.execute("COMMIT")
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                raise KeyStoreError(f"a key named {record.name!r} exists already") from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(insert)

    async def revoke_key(self, name: str, now: float) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute(
                    "UPDATE aifetch_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                    (now, name),
                ).rowcount
                if changed:
                    conn.execute("UPDATE aifetch_meta SET value = value + 1 WHERE name = 'keys'")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return bool(changed)

        return await self._run(revoke)


def _version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aifetch_meta'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT value FROM aifetch_meta WHERE name = 'schema'").fetchone()
    return int(row[0]) if row else 0
