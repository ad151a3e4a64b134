"""tests/vectors/chat.json: the chat stream cases of tests/support/openai_fixtures.py, as JSON
for aifetch.js's tests (tests/js/chat.test.mjs), which cannot import Python.

The file must be the cases exactly, so both accumulators are held to the same answers.
Rewrite it after changing the cases with ``python -m tests.test_chat_vectors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from aifetch.openai import ChatCompletionAccumulator, decode_chunk
from tests.support.openai_fixtures import CASES
from tests.test_openai_accumulator import _absent_as_null

VECTORS_FILE = Path(__file__).parent / "vectors" / "chat.json"


def current() -> dict[str, Any]:
    return {
        "about": "chat.completion.chunk sequences and the chat.completion each adds up to; "
        "written from tests/support/openai_fixtures.py by tests/test_chat_vectors.py",
        "cases": [{"name": c.name, "chunks": c.chunks, "expected": c.expected} for c in CASES],
    }


def test_the_file_holds_the_current_cases() -> None:
    on_disk = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    assert on_disk == current(), "run: python -m tests.test_chat_vectors"


def test_the_python_accumulator_gives_each_expected_answer() -> None:
    for case in json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["cases"]:
        acc = ChatCompletionAccumulator()
        for chunk in case["chunks"]:
            acc.add(decode_chunk(json.dumps(chunk)))
        encoded = json.loads(msgspec.json.encode(acc.final()))
        assert encoded == _absent_as_null(case["expected"]), case["name"]


if __name__ == "__main__":
    VECTORS_FILE.write_text(
        json.dumps(current(), indent=1, ensure_ascii=True) + "\n", encoding="utf-8"
    )
