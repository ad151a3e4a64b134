"""``aifetch keys``, ``aifetch ledger`` and ``aifetch usage``: virtual keys and the usage
ledger from the command line. Each reads the gateway config (``--config FILE``) for the
ledger database and the key secret.

Exit codes: 0 done; 1 the operation failed (an unknown key, the database unreachable);
2 the command or the config is wrong (with a hint).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ._config import ConfigError, GatewayConfig, load_config
from .governance._admin import key_json
from .governance._errors import GovernanceError
from .governance._keys import KeyRing, KeySpec, check_spec
from .governance._ledger import Database, open_database
from .governance._report import render_usage
from .governance._timearg import parse_instant
from .governance._types import KeyRecord

__all__ = ["ADMIN_COMMANDS", "add_admin_commands", "run_admin"]

ADMIN_COMMANDS = frozenset({"keys", "ledger", "usage"})


class _UsageError(Exception):
    """A wrong command or config: exit 2 with a hint."""


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", required=True, help="the gateway's YAML config (ledger, keys)"
    )


def add_admin_commands(commands: Any) -> None:
    """Add the subcommands to ``aifetch``'s subparsers (``parser.add_subparsers()``)."""
    keys = commands.add_parser("keys", help="create, list and revoke virtual keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; it is printed once")
    _config_option(create)
    create.add_argument("--name", required=True, help="the key's name (logs, ledger, revoke)")
    create.add_argument(
        "--models", nargs="+", default=["*"], help="models it may use (default: all)"
    )
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--max-streams", type=int, help="concurrent streams")
    create.add_argument("--budget", type=float, metavar="USD", help="spending cap in USD")
    create.add_argument("--per", choices=["day", "month"], default="day", help="budget period")
    create.add_argument("--expires", help="30d, 12h, or a date (2026-01-31)")
    listing = actions.add_parser("list", help="the keys (never the keys themselves)")
    _config_option(listing)
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    revoke = actions.add_parser("revoke", help="stop a key working (within keys.refresh)")
    _config_option(revoke)
    revoke.add_argument("name")

    ledger = commands.add_parser("ledger", help="the usage ledger's database")
    ledger_actions = ledger.add_subparsers(dest="action", required=True)
    migrate = ledger_actions.add_parser("migrate", help="create or update the schema")
    _config_option(migrate)

    usage = commands.add_parser("usage", help="spend and tokens from the ledger")
    _config_option(usage)
    usage.add_argument("--since", default="24h", help="30m, 24h, 7d, or a date (default 24h)")
    usage.add_argument("--by", choices=["caller", "model", "key"], default="caller")
    usage.add_argument("--format", choices=["table", "json", "csv"], default="table")


def run_admin(args: argparse.Namespace) -> int:
    """Run one admin command; the exit code."""
    name = f"aifetch {args.command}"
    try:
        config = load_config(args.config)
        runner = _RUNNERS[args.command]
        return asyncio.run(runner(config, args))
    except (ConfigError, _UsageError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        print(f"Try '{name} --help'.", file=sys.stderr)
        return 2
    except GovernanceError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"{name}: cannot reach the ledger database: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            print(f"{name}: the ledger database refused: {exc}", file=sys.stderr)
            return 1
        raise


def _ledger_url(config: GatewayConfig) -> str:
    if config.ledger is None:
        raise _UsageError(
            "no ledger database in the config: virtual keys and usage live in it. Add "
            "'ledger: sqlite:///path/usage.db' (one machine) or 'ledger: postgresql://...'"
        )
    return config.ledger


async def _with_db(
    config: GatewayConfig, work: Callable[[Database], Awaitable[int]], *, check: bool = True
) -> int:
    db = open_database(_ledger_url(config), check_schema=check)
    await db.connect()
    try:
        return await work(db)
    finally:
        await db.close()


async def _keys(config: GatewayConfig, args: argparse.Namespace) -> int:
    _ledger_url(config)
    keys = config.keys
    if keys is None:
        raise _UsageError("virtual keys need 'keys: {secret: ${AIFETCH_KEY_SECRET}}' in the config")
    spec = _spec(config, args) if args.action == "create" else None

    async def work(db: Database) -> int:
        ring = KeyRing(db, keys.secret)
        if spec is not None:
            key, record = await ring.create(spec)
            print(key)
            print(
                f"created key {record.name!r} ({record.hint}); it is shown only now: store it",
                file=sys.stderr,
            )
        elif args.action == "revoke":
            await ring.revoke(args.name)
            print(f"revoked key {args.name!r}", file=sys.stderr)
        else:
            print(_render_keys(await ring.list(args.all), args.format))
        return 0

    return await _with_db(config, work)


def _spec(config: GatewayConfig, args: argparse.Namespace) -> KeySpec:
    models = [m for arg in args.models for m in arg.split(",") if m]
    try:
        expires = (
            None if args.expires is None else parse_instant(args.expires, time.time(), future=True)
        )
        spec = KeySpec(
            name=args.name,
            models=models,
            rpm=args.rpm,
            tpm=args.tpm,
            max_streams=args.max_streams,
            budget_usd=args.budget,
            budget_per=args.per,
            expires_at=expires,
        )
        check_spec(spec, set(config.models))
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return spec


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _render_keys(records: list[KeyRecord], fmt: str) -> str:
    if fmt == "json":
        return msgspec.json.encode([key_json(r) for r in records]).decode()
    rows: list[tuple[str, ...]] = [
        ("name", "hint", "models", "rpm", "tpm", "streams", "budget", "expires", "revoked")
    ]
    for r in records:
        budget = "-" if r.budget_usd is None else f"{r.budget_usd:g}/{r.budget_per}"
        rows.append(
            (
                r.name,
                r.hint,
                ",".join(r.models),
                *("-" if v is None else str(v) for v in (r.rpm, r.tpm, r.max_streams)),
                budget,
                _when(r.expires_at),
                _when(r.revoked_at),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _shown(url: str) -> str:
    """The database URL without credentials."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def _ledger(config: GatewayConfig, args: argparse.Namespace) -> int:
    url = _ledger_url(config)

    async def work(db: Database) -> int:
        before = await db.schema_version()
        after = await db.migrate()
        change = "up to date" if before == after else f"migrated from version {before}"
        print(f"ledger schema version {after} ({change}) in {_shown(url)}", file=sys.stderr)
        return 0

    return await _with_db(config, work, check=False)


async def _usage(config: GatewayConfig, args: argparse.Namespace) -> int:
    _ledger_url(config)
    try:
        since = parse_instant(args.since, time.time(), future=False)
    except ValueError as exc:
        raise _UsageError(f"--since: {exc}") from None

    async def work(db: Database) -> int:
        lines = await db.usage(since, args.by)
        print(render_usage(lines, by=args.by, fmt=args.format))
        return 0

    return await _with_db(config, work)


_RUNNERS: dict[str, Callable[[GatewayConfig, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "keys": _keys,
    "ledger": _ledger,
    "usage": _usage,
}
