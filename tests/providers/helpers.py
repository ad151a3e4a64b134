"""Feeding transcripts to stream translators at every split, and reading what comes out.

``splits(data)`` gives the ways a transcript is cut into reads: whole, one byte at a time,
at every single cut point (or, for long transcripts, at 400 seeded ones), and a few seeded
many-piece cuttings. ``translate`` runs one cutting through ``SSEDecoder`` and a fresh
translator, ``close()`` included. ``parse`` reads the output back block by block, keeping
the order of data, comments and named events.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aifetch.providers import StreamTranslator
from aifetch.sse import SSEDecoder

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
CREATED = 1_700_000_000
EVERY_SPLIT_LIMIT = 3000  # longer transcripts are cut at SEEDED_SPLITS seeded points
SEEDED_SPLITS = 400


def load(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


def splits(data: bytes, seed: int = 0) -> Iterator[list[bytes]]:
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    if len(data) <= EVERY_SPLIT_LIMIT:
        points: list[int] = list(range(1, len(data)))
    else:
        points = sorted(rng.sample(range(1, len(data)), SEEDED_SPLITS))
    for cut in points:
        yield [data[:cut], data[cut:]]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(2, 40))))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def translate(make: Callable[[], StreamTranslator], pieces: list[bytes]) -> tuple[bytes, Any]:
    """(output bytes, the translator) for ``pieces`` read one after another."""
    translator = make()
    decoder = SSEDecoder()
    out = [translator.feed(event) for piece in pieces for event in decoder.feed(piece)]
    out.append(translator.close())
    return b"".join(out), translator


def parse(output: bytes) -> list[Any]:
    """Each block of ``output``: ``"[DONE]"``, ``("comment", text)``, ``(event, data)`` for
    a named event, or the data's JSON for an unnamed one."""
    assert output == b"" or output.endswith(b"\n\n"), output[-80:]
    parsed: list[Any] = []
    for block in output.split(b"\n\n")[:-1]:
        lines = block.decode().split("\n")
        if lines[0].startswith(": "):
            parsed.append(("comment", lines[0][2:]))
            continue
        event = lines[0][7:] if lines[0].startswith("event: ") else None
        data_lines = [line[6:] for line in lines if line.startswith("data: ")]
        assert len(data_lines) == 1, block
        data = data_lines[0]
        value = data if data == "[DONE]" else json.loads(data)
        parsed.append(value if event is None else (event, value))
    return parsed


def check_every_split(
    make: Callable[[], StreamTranslator], data: bytes, expected: list[Any]
) -> StreamTranslator:
    """Whole and at every split the output is the same bytes, and reads as ``expected``."""
    whole, translator = translate(make, [data])
    assert parse(whole) == expected
    for pieces in splits(data):
        output, _ = translate(make, pieces)
        assert output == whole, [len(p) for p in pieces]
    return translator


class OpenAIChunks:
    """Expected chat.completion.chunk payloads of one stream."""

    def __init__(self, id: str, model: str) -> None:
        self.id = id
        self.model = model

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._base([choice])

    def _base(self, choices: list[Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        }

    def role(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": ""})

    def text(self, *texts: str) -> list[dict[str, Any]]:
        return [self.chunk({"content": t}) for t in texts]

    def reasoning(self, *texts: str) -> list[dict[str, Any]]:
        return [self.chunk({"reasoning_content": t}) for t in texts]

    def signature(self, signature: str) -> dict[str, Any]:
        return self.chunk({"reasoning_signature": signature})

    def tool(self, index: int, id: str, name: str, arguments: str = "") -> dict[str, Any]:
        function = {"name": name, "arguments": arguments}
        call = {"index": index, "id": id, "type": "function", "function": function}
        return self.chunk({"tool_calls": [call]})

    def args(self, index: int, *pieces: str) -> list[dict[str, Any]]:
        calls = [[{"index": index, "function": {"arguments": p}}] for p in pieces]
        return [self.chunk({"tool_calls": c}) for c in calls]

    def finish(self, reason: str) -> dict[str, Any]:
        return self.chunk({}, reason)

    def usage(self, prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Any:
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        return {**self._base([]), "usage": usage}


PING = ("comment", "ping")
DONE = "[DONE]"
