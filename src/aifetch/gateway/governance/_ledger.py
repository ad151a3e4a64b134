"""The usage ledger's writer: rows go into a bounded buffer and out in batches, off the
request path.

``record`` is a list append: it never waits, and a full buffer drops the row (counted, and
logged at most once a minute) instead of slowing a call. One task writes a batch when
``ledger_batch`` rows have gathered or ``ledger_interval`` seconds have passed. A failed
write (the database away) keeps its rows, within the bound, for the next try. ``aclose``
writes everything still buffered.

``Database`` is what the SQLite and PostgreSQL modules provide; ``open_database`` picks
one by the URL's scheme.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from ._types import KeyRecord, LedgerRow, UsageLine

__all__ = ["Database", "Ledger", "open_database"]

log = logging.getLogger("aifetch.gateway.governance")

_DROP_LOG_EVERY = 60.0


class Database(Protocol):
    kind: str

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def schema_version(self) -> int: ...
    async def migrate(self) -> int: ...
    async def write_rows(self, rows: list[LedgerRow]) -> None: ...
    async def usage(self, since: float, by: str) -> list[UsageLine]: ...
    async def explain_usage(self, since: float, by: str) -> str: ...
    async def keys_version(self) -> int: ...
    async def active_keys(self) -> list[KeyRecord]: ...
    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]: ...
    async def create_key(self, record: KeyRecord) -> None: ...
    async def revoke_key(self, name: str, now: float) -> bool: ...


def open_database(url: str, *, check_schema: bool = True) -> Database:
    """The database for a ``ledger:`` URL (not connected yet). ``check_schema=False`` for
    ``aifetch ledger migrate``, which is what brings the schema up to date."""
    if url.startswith("sqlite:"):
        from ._ledger_sqlite import SqliteDatabase

        return SqliteDatabase(url)
    from ._ledger_postgres import PostgresDatabase

    return PostgresDatabase(url, check_schema=check_schema)


class Ledger:
    """Buffered, batched ledger writes to ``db``."""

    def __init__(self, db: Database, *, capacity: int, batch: int, interval: float) -> None:
        self.db = db
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self._rows: list[LedgerRow] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = False
        self._last_drop_log = -_DROP_LOG_EVERY
        self.written = 0
        self.dropped = 0

    def record(self, row: LedgerRow) -> None:
        """Buffer one row (never waits)."""
        if len(self._rows) >= self.capacity:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log >= _DROP_LOG_EVERY:
                self._last_drop_log = now
                log.warning(
                    "ledger buffer full (%d rows): dropping rows until the writer catches up "
                    "(%d dropped so far)",
                    self.capacity,
                    self.dropped,
                )
            return
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._wake.set()

    @property
    def buffered(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="aifetch-ledger")

    async def aclose(self) -> None:
        """Stop the writer task and write every buffered row (one try per batch)."""
        if self._task is not None:
            # Not cancelled: a write cut off mid-way may still land (SQLite's thread
            # finishes it), and its rows would then be written twice.
            self._closing = True
            self._wake.set()
            await self._task
            self._task = None
        while self._rows:
            if not await self.flush():
                log.error("ledger: %d rows not written at shutdown", len(self._rows))
                break

    async def _loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if self._closing:
                return
            while len(self._rows) >= self.batch and await self.flush():
                pass
            if self._rows:
                await self.flush()

    async def flush(self) -> bool:
        """Write one batch; False when the write failed (its rows are kept)."""
        if not self._rows:
            return True
        batch = self._rows[: self.batch]
        del self._rows[: self.batch]
        try:
            await self.db.write_rows(batch)
        except Exception as exc:
            # Back at the front, within the bound: what does not fit is dropped.
            room = max(0, self.capacity - len(self._rows))
            self.dropped += max(0, len(batch) - room)
            self._rows[:0] = batch[:room]
            if not self._failing:
                self._failing = True
                log.error("ledger write failed (%s); retrying", type(exc).__name__)
            return False
        if self._failing:
            self._failing = False
            log.warning("ledger writes succeed again")
        self.written += len(batch)
        return True
