"""Input unions accepted across the public API, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

if TYPE_CHECKING:  # named in the aliases below only (strings): the core imports no ssl
    import os
    import ssl

__all__ = ["UNSET", "BodyInit", "CertInit", "RedirectMode", "Unset", "VerifyInit"]

RedirectMode: TypeAlias = Literal["follow", "manual", "error"]

# bytes-like and str bodies are sent whole (and can be replayed on retry or redirect);
# iterables are streamed once.
BodyInit: TypeAlias = (
    "bytes | bytearray | memoryview | str | Iterable[bytes] | AsyncIterable[bytes]"
)

# TLS: what to trust (see aifetch._tls), and the client certificate to present.
VerifyInit: TypeAlias = "bool | str | os.PathLike[str] | ssl.SSLContext"
_Path: TypeAlias = "str | os.PathLike[str]"
CertInit: TypeAlias = "_Path | tuple[_Path, _Path]"


class Unset:
    """Tells "not passed" apart from ``None`` (which often means "no limit")."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final[Any] = Unset()
