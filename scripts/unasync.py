"""Generate the sync client from the async one: ``src/aifetch/_async`` → ``src/aifetch/_sync``.

The async code is the source; the sync copy is made by rewriting tokens (``async def`` →
``def``, ``await x`` → ``x``, ``AsyncClient`` → ``Client`` …), as httpcore does. The
transports and the waiting helper differ in kind (aiohttp vs urllib3), so each flavour
writes its own ``_transport.py`` and ``_io.py`` by hand; everything else is generated. The
lean transport (``_lean*.py``) and the exchange its requests share with the aiohttp one
(``_exchange.py``) are asyncio's alone and have no blocking twin.

    python scripts/unasync.py          # rewrite src/aifetch/_sync
    python scripts/unasync.py --check  # fail if the copy is out of date (CI runs this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "aifetch" / "_async"
TARGET = ROOT / "src" / "aifetch" / "_sync"
HAND_WRITTEN = {
    "_transport.py",
    "_io.py",
    "_exchange.py",
    "_lean.py",
    "_lean_body.py",
    "_lean_pool.py",
}

# Order matters: longer, more specific patterns first.
SUBSTITUTIONS: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\baiter\(", "iter("),
    (r"\banext\(", "next("),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncIterable\b", "Iterable"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bAwaitable\[AsyncResponse\]", "Response"),
    (r"\bAsyncResponse\b", "Response"),
    (r"\bAsyncClient\b", "Client"),
    (r"\bAsyncEventSource\b", "EventSource"),
    (r"\bAsyncNext\b", "Next"),
    (r"\bAsyncPipe\b", "Pipe"),
    (r"\basync\b", "sync"),
    (r"\bAsync\b", "Sync"),
]
_COMPILED = [(re.compile(p), r) for p, r in SUBSTITUTIONS]
HEADER = "# Generated from src/aifetch/_async/{name} by scripts/unasync.py: do not edit.\n"


def convert(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        for pattern, replacement in _COMPILED:
            line = pattern.sub(replacement, line)
        out.append(line)
    return "".join(out)


def expected() -> dict[Path, str]:
    files = {}
    for path in sorted(SOURCE.glob("*.py")):
        if path.name in HAND_WRITTEN:
            continue
        files[TARGET / path.name] = HEADER.format(name=path.name) + convert(path.read_text())
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in expected().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path.relative_to(ROOT))
            if not check:
                path.write_text(text)
    if check and stale:
        print("out of date (run python scripts/unasync.py):", *stale, sep="\n  ")
        return 1
    if not check:
        print(f"wrote {len(stale)} file(s)" if stale else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
