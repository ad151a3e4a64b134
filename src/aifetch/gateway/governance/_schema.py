"""The ledger database's schema, versioned: each migration is a list of statements per
dialect, applied in order and recorded in ``aifetch_meta`` (``schema`` row).

Tables:

- ``aifetch_ledger``: one row per call, indexed on ``ts`` so a report over a time range
  reads only that range (never the whole table).
- ``aifetch_keys``: virtual keys, as an HMAC-SHA256 of the key (``hash``) and a short
  ``hint`` for people; a name is unique among keys not revoked.
- ``aifetch_meta``: ``schema`` (the version) and ``keys`` (bumped by every key change, so
  gateways reload their key snapshot only when it moved).

Money is integer nano-USD (``cost_nano_usd``; 1 USD = 1e9) so sums are exact.
"""

from __future__ import annotations

__all__ = ["LEDGER_COLUMNS", "META_TABLE", "MIGRATIONS", "SCHEMA_VERSION"]

LEDGER_COLUMNS = (
    "ts",
    "request_id",
    "caller",
    "key_name",
    "model",
    "upstream",
    "dialect",
    "stream",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "ttft_ms",
    "duration_ms",
    "error",
)


def _ledger(ts: str, blob: str, real: str, boolean: str) -> list[str]:
    return [
        f"""CREATE TABLE aifetch_ledger (
            ts {ts} NOT NULL,
            request_id TEXT NOT NULL,
            caller TEXT,
            key_name TEXT,
            model TEXT NOT NULL,
            upstream TEXT,
            dialect TEXT NOT NULL,
            stream {boolean} NOT NULL,
            status INTEGER NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            cached_tokens BIGINT NOT NULL,
            reasoning_tokens BIGINT NOT NULL,
            cost_nano_usd BIGINT NOT NULL,
            ttft_ms {real},
            duration_ms {real} NOT NULL,
            error TEXT
        )""",
        "CREATE INDEX aifetch_ledger_ts ON aifetch_ledger (ts)",
        f"""CREATE TABLE aifetch_keys (
            name TEXT NOT NULL,
            hash {blob} NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            models TEXT NOT NULL,
            rpm BIGINT,
            tpm BIGINT,
            max_streams BIGINT,
            budget_usd {real},
            budget_per TEXT,
            created_at {ts} NOT NULL,
            expires_at {ts},
            revoked_at {ts}
        )""",
        "CREATE UNIQUE INDEX aifetch_keys_active_name ON aifetch_keys (name) "
        "WHERE revoked_at IS NULL",
        "INSERT INTO aifetch_meta (name, value) VALUES ('keys', 0)",
    ]


_META = "CREATE TABLE IF NOT EXISTS aifetch_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)"

# version → statements, per dialect. Append new versions; never edit a released one.
MIGRATIONS: dict[str, list[tuple[int, list[str]]]] = {
    "sqlite": [(1, _ledger("REAL", "BLOB", "REAL", "INTEGER"))],
    "postgresql": [(1, _ledger("TIMESTAMPTZ", "BYTEA", "DOUBLE PRECISION", "BOOLEAN"))],
}
META_TABLE = _META
SCHEMA_VERSION = max(version for version, _ in MIGRATIONS["sqlite"])
