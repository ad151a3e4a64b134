"""``Headers``: case-insensitive, multi-valued and ordered, as in the fetch standard."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, overload

from ._redact import redact_headers

__all__ = ["Headers", "HeadersInit"]

HeadersInit: TypeAlias = "Headers | Mapping[str, str] | Iterable[tuple[str, str]]"

# RFC 9110 §5.1: a field name is a token. §5.5: a value never holds CR, LF or NUL, which
# would let a caller inject headers of their own. One regex search each: this runs for
# every header of every request.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[\r\n\0]")


def _check(name: str, value: str) -> None:
    if not name or _BAD_NAME.search(name):
        raise ValueError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value):
        raise ValueError(f"invalid character in the value of header {name!r}")


class Headers:
    """An ordered list of (name, value) pairs looked up without regard to case.

    ``get()`` joins repeated values with ``", "`` as fetch does; ``get_all()`` keeps them
    apart (needed for ``Set-Cookie``). ``items()`` gives the pairs as they were added.
    """

    __slots__ = ("_items",)
    _items: list[tuple[str, str]]

    def __init__(self, init: HeadersInit | None = None) -> None:
        if isinstance(init, Headers):  # already checked: copied as is
            self._items = list(init._items)
            return
        self._items = []
        if init is None:
            return
        pairs = init.items() if isinstance(init, Mapping) else init
        for name, value in pairs:
            self.append(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap pairs that a transport already parsed and checked; no copying."""
        h = cls.__new__(cls)
        h._items = items
        return h

    def append(self, name: str, value: str) -> None:
        value = str(value).strip(" \t")
        _check(name, value)
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        value = str(value).strip(" \t")
        _check(name, value)
        lower = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != lower]
        self._items.append((name, value))

    def setdefault(self, name: str, value: str) -> None:
        if name not in self:
            self.append(name, value)

    def _merge_from(self, other: Headers, *, override: bool) -> None:
        """Add ``other``'s pairs (already checked when they went into ``other``)."""
        if override:
            for name in other:
                self.delete(name)
            self._items.extend(other._items)
            return
        # Pipes add one or two headers: a scan each beats building a set of names.
        added = [item for item in other._items if item[0] not in self]
        self._items.extend(added)

    def delete(self, name: str) -> None:
        lower = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != lower]

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        found: str | None = None
        # A plain loop rather than a list comprehension (a frame of its own before 3.12):
        # this runs several times per request.
        size = len(lower)
        for n, v in self._items:
            # A length check first: most names differ in length, and then need no lower().
            if len(n) == size and (n == lower or n.lower() == lower):
                found = v if found is None else f"{found}, {v}"
        return default if found is None else found

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for n, v in self._items if n.lower() == lower]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for n, _ in self._items:
            seen.setdefault(n.lower(), None)
        return list(seen)

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lower = name.lower()
        # A plain loop, no generator (SIM110 would add one): this runs several times per
        # request.
        for n, _ in self._items:  # noqa: SIM110
            if n == name or n.lower() == lower:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self.keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return [(n.lower(), v) for n, v in self._items] == [
                (n.lower(), v) for n, v in other._items
            ]
        if isinstance(other, Mapping):
            return self == Headers(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({redact_headers(self._items)!r})"
