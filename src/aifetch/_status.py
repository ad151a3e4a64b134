"""Standard reason phrases, for responses whose server sent none (RFC 9110 §15)."""

from __future__ import annotations

from http import HTTPStatus

_PHRASES: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
# RFC 9110 renamed these; HTTPStatus still carries the older phrases on some versions.
_PHRASES[413] = "Content Too Large"
_PHRASES[422] = "Unprocessable Content"

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def reason_phrase(status: int) -> str:
    """The standard phrase for ``status``, or ``""`` for codes with none."""
    return _PHRASES.get(status, "")
