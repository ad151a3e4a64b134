"""``aifetch serve``: the command line (argparse; the CLI is small)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._cli_admin import ADMIN_COMMANDS, add_admin_commands, run_admin
from ._config import ConfigError, GatewayConfig, default_config, load_config
from ._server import run
from .governance import check_workers

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aifetch", description="aifetch command line")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the OpenAI-compatible gateway",
        description="Run the gateway. Without --config: 127.0.0.1:8000, model 'mock-gpt' "
        "served by the built-in offline mock provider.",
    )
    serve.add_argument("--config", "-c", help="YAML config file (see docs/GATEWAY.md)")
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, help="port (default: server.port, 8000)")
    serve.add_argument("--workers", "-w", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_admin_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in ADMIN_COMMANDS:
        return run_admin(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    try:
        config: GatewayConfig = load_config(args.config) if args.config else default_config()
        check_workers(config, args.workers)
    except ConfigError as exc:
        print(f"aifetch: config error: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        run(config, host=host, port=port, workers=args.workers, path=args.config)
    except (ValueError, ConfigError) as exc:
        print(f"aifetch: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
