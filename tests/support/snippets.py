"""The code blocks of a Markdown document, each with the decision its author wrote above it.

Every fenced ``sh``/``bash``/``python``/``yaml`` block must be preceded (on the line just
above its fence) by a marker, an HTML comment a reader never sees:

- ``<!-- snippet: run -->``: run as printed (``sh`` with bash, ``python`` in a fresh
  interpreter) against a real ``aifetch serve`` on a free port (``127.0.0.1:8000`` in the
  text is replaced by its address); ``run, needs: sdk`` names the extra whose install line
  the same section shows, and the snippet may import only what that extra brings;
- ``<!-- snippet: check -->``: a ``yaml`` config validated as the gateway would load it
  (``${NAME}`` filled in; a partial config completed with one model);
- ``<!-- snippet: skip: <why> -->``: not run, for the reason given (a real API key, an
  install, a fragment).

A block without a marker is an error, so a new section decides explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LANGUAGES", "Snippet", "snippets"]

LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "yaml": "yaml"}
_FENCE = re.compile(r"^(```+|~~~+)\s*([A-Za-z0-9_+-]*)")
_MARKER = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")
_HEADING = re.compile(r"^#{1,6} ")


@dataclass
class Snippet:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str  # sh, python or yaml
    code: str
    action: str | None  # run, check or skip; None when the marker is missing
    options: dict[str, str] = field(default_factory=dict)
    section: str = ""  # the text from the last heading to the fence

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def _parse_marker(text: str) -> tuple[str, dict[str, str]]:
    """``run, needs: sdk`` → ("run", {"needs": "sdk"}); ``skip: why`` → ("skip", {"why": ...})."""
    if text.startswith("skip"):
        return "skip", {"why": text[4:].lstrip(" :").strip()}
    action, *rest = (part.strip() for part in text.split(","))
    options = {}
    for part in rest:
        key, _, value = part.partition(":")
        options[key.strip()] = value.strip()
    return action, options


def snippets(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    section: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if not fence:
            section = [] if _HEADING.match(line) else [*section, line]
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        language = LANGUAGES.get(fence.group(2).lower())
        if language is not None:
            marker = _MARKER.match(lines[i - 1]) if i else None
            action, options = _parse_marker(marker.group(1)) if marker else (None, {})
            found.append(
                Snippet(
                    path,
                    i + 1,
                    language,
                    "\n".join(lines[i + 1 : end]) + "\n",
                    action,
                    options,
                    "\n".join(section),
                )
            )
        section = [*section, *lines[i : end + 1]]
        i = end + 1
    return found
