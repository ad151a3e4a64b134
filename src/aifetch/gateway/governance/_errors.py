"""Errors inside governance; none of them reaches a caller as is (the governor turns
them into ``GatewayError`` answers, the CLI into messages and exit codes)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "GovernanceError",
    "KeyStoreError",
    "MissingPackageError",
    "SchemaError",
    "StateUnavailable",
    "import_optional",
]


class GovernanceError(RuntimeError):
    """Base of the errors below."""


class StateUnavailable(GovernanceError):
    """The shared state store (Redis) did not answer; ``on_state_error`` decides."""


class KeyStoreError(GovernanceError):
    """A virtual key operation that cannot be done (a name in use, an unknown name)."""


class SchemaError(GovernanceError):
    """The ledger database's schema is missing or older than this version needs."""


class MissingPackageError(GovernanceError):
    """A configured backend needs a package that is not installed."""


def import_optional(module: str, extra: str, what: str) -> ModuleType:
    """``module``, or a MissingPackageError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackageError(
            f"{what} needs the {module.split('.')[0]!r} package: pip install 'aifetch[{extra}]'"
        ) from None
