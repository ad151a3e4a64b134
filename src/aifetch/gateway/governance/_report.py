"""``aifetch usage``: a ledger report as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import msgspec

from ._types import UsageLine

__all__ = ["render_usage"]

_HEAD = ("calls", "prompt", "completion", "cached", "reasoning", "errors", "cost_usd")


def _cells(line: UsageLine) -> tuple[str, ...]:
    return (
        str(line.calls),
        str(line.prompt_tokens),
        str(line.completion_tokens),
        str(line.cached_tokens),
        str(line.reasoning_tokens),
        str(line.errors),
        f"{line.cost_usd:.6f}",
    )


def _name(line: UsageLine) -> str:
    return "-" if line.name is None else line.name


def _total(lines: Sequence[UsageLine]) -> UsageLine:
    return UsageLine(
        "TOTAL",
        *(sum(getattr(line, f) for line in lines) for f in UsageLine.__struct_fields__[1:]),
    )


def render_usage(lines: Sequence[UsageLine], *, by: str, fmt: str) -> str:
    """The report in ``fmt`` (``table``, ``json`` or ``csv``), grouped ``by``."""
    if fmt == "json":
        return msgspec.json.encode(
            [
                {
                    by: line.name,
                    "calls": line.calls,
                    "prompt_tokens": line.prompt_tokens,
                    "completion_tokens": line.completion_tokens,
                    "cached_tokens": line.cached_tokens,
                    "reasoning_tokens": line.reasoning_tokens,
                    "errors": line.errors,
                    "cost_usd": round(line.cost_usd, 9),
                }
                for line in lines
            ]
        ).decode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow((by, *_HEAD))
        for line in lines:
            writer.writerow((line.name or "", *_cells(line)))
        return out.getvalue().rstrip("\n")
    rows = [(by, *_HEAD)] + [(_name(line), *_cells(line)) for line in lines]
    if lines:
        rows.append(("TOTAL", *_cells(_total(lines))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = []
    for row in rows:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        text.append("  ".join((first, *rest)))
    return "\n".join(text)
