"""The configured secrets, and scrubbing them out of whatever reaches a caller.

Every upstream key and secret header value from the config (six characters or more: a
shorter one would redact ordinary words) is looked for in every byte a caller receives:
non-stream bodies, error bodies, stream batches and error messages. Each is also looked
for as JSON escapes it (``/`` and ``"`` may be escaped), since an upstream that echoes a
request back does so inside a JSON string. One ``find`` per secret per stream read: a
stream has a handful of secrets and tens of reads per second, so the scan costs little
(bench/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = ["REDACTED", "Secrets"]

REDACTED = b"[redacted]"
_MIN_LENGTH = 6


class Secrets:
    __slots__ = ("_texts", "longest", "values")

    def __init__(self, values: Iterable[str]) -> None:
        found: list[bytes] = []
        for value in values:
            if len(value) < _MIN_LENGTH:
                continue
            raw = value.encode()
            # The JSON string form, without its quotes: msgspec escapes '"' and '\\' (and
            # control characters); '/' may come escaped from other encoders.
            variants = {raw, msgspec.json.encode(value)[1:-1], raw.replace(b"/", b"\\/")}
            found.extend(v for v in variants if v not in found)
        # Longest first: a secret that contains another is replaced whole.
        self.values = tuple(sorted(found, key=len, reverse=True))
        self._texts = tuple(v.decode("utf-8", "replace") for v in self.values)
        self.longest = len(self.values[0]) if self.values else 0

    def __bool__(self) -> bool:
        return bool(self.values)

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``[redacted]``."""
        for secret in self.values:
            if data.find(secret) >= 0:  # find: `in` on bytes is slower (ARCHITECTURE.md)
                data = data.replace(secret, REDACTED)
        return data

    def scrub_text(self, text: str) -> str:
        for secret in self._texts:
            if secret in text:
                text = text.replace(secret, REDACTED.decode())
        return text

    def __repr__(self) -> str:
        return f"Secrets({len(self.values)} values)"  # never the values
