"""The shared Server-Sent Events vectors (tests/vectors/sse.json) against ``SSEDecoder``.

aifetch.js's decoder runs the same file (tests/js/sse.test.mjs, in Chromium and in Node),
so the two decoders are held to one set of expectations at the same chunkings.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifetch.sse import EventTooLargeError, SSEDecoder

VECTORS_FILE = Path(__file__).parent / "vectors" / "sse.json"
DOC = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DOC["vectors"]
SIZES = (2, 3, 5, 7)


def input_bytes(vector: dict[str, Any]) -> bytes:
    parts = vector["input"]
    return b"".join(p.encode() if isinstance(p, str) else bytes.fromhex(p["hex"]) for p in parts)


def cut(stream: bytes, offsets: list[int]) -> list[bytes]:
    bounds = [0, *offsets, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def chunkings(vector: dict[str, Any]) -> Iterator[tuple[str, list[bytes]]]:
    """The rules named in the file's "chunkings", in the same order as the JS runner."""
    stream = input_bytes(vector)
    yield "whole", [stream]
    yield "bytes", [stream[i : i + 1] for i in range(len(stream))]
    yield "bytes-and-empty", [p for i in range(len(stream)) for p in (stream[i : i + 1], b"")]
    for offset in range(len(stream) + 1):
        yield f"halves@{offset}", cut(stream, [offset])
    for size in SIZES:
        yield f"sizes:{size}", [stream[i : i + size] for i in range(0, len(stream), size)]
    for offsets in vector.get("splits", []):
        yield f"splits:{offsets}", cut(stream, offsets)


def run(vector: dict[str, Any], reads: list[bytes]) -> dict[str, Any]:
    comments: list[str] = []
    kwargs: dict[str, Any] = {"on_comment": comments.append}
    if "max_event_size" in vector:
        kwargs["max_event_size"] = vector["max_event_size"]
    decoder = SSEDecoder(**kwargs)
    events = [event for read in reads for event in decoder.feed(read)]
    outcome = {
        "events": [
            {"event": e.event, "data": e.data, "id": e.id, "retry": e.retry} for e in events
        ],
        "last_event_id": decoder.last_event_id,
        "retry": decoder.retry,
        "comments": comments,
    }
    decoder.close()
    return outcome


def test_the_file_names_the_chunking_rules_this_runner_applies() -> None:
    assert set(DOC["chunkings"]) == {
        "whole",
        "bytes",
        "bytes-and-empty",
        "halves",
        "sizes",
        "splits",
    }
    assert len(VECTORS) >= 60
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    for label, reads in chunkings(vector):
        if "error" in vector:
            assert vector["error"] == "EventTooLargeError"
            with pytest.raises(EventTooLargeError):
                run(vector, reads)
            continue
        outcome = run(vector, reads)
        expected = {
            "events": vector["events"],
            "last_event_id": vector["last_event_id"],
            "retry": vector["retry"],
        }
        if "comments" in vector:
            expected["comments"] = vector["comments"]
        else:
            del outcome["comments"]
        assert outcome == expected, label
