"""``aifetch serve``: the command line (argparse; the CLI is small)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._cli_admin import ADMIN_COMMANDS, add_admin_commands, run_admin
from ._config import ConfigError, GatewayConfig, default_config, load_config
from ._server import ListenError, run
from .governance import check_workers

__all__ = ["main"]


def _port(text: str) -> int:
    """``--port``: a TCP port, 0 (any free port) to 65535 (RFC 6335 §6)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is not a port number: use 0-65535 (0: any free port)"
        )
    return port


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a whole number of processes, at least 1"
        )
    return count


class _Parser(argparse.ArgumentParser):
    """argparse with a hint after a usage error (exit status 2, as argparse and click use)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\nTry '{self.prog} --help' for help.\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aifetch", description="aifetch command line")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the OpenAI-compatible gateway",
        description="Run the gateway. Without --config: 127.0.0.1:8000, model 'mock-gpt' "
        "served by the built-in offline mock provider.",
    )
    serve.add_argument("--config", "-c", help="YAML config file (see docs/GATEWAY.md)")
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", "-p", type=_port, help="port (default: server.port, 8000)")
    serve.add_argument(
        "--workers", "-w", type=_workers, default=1, help="worker processes (default 1)"
    )
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
    try:
        run(config, host=host, port=port, workers=args.workers, path=args.config)
    except (ValueError, ConfigError) as exc:
        print(f"aifetch: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        # Not a usage error: the address is taken or not allowed (exit 1, as click does).
        print(f"aifetch: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
