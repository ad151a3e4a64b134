"""A fake Anthropic and Gemini API for ``bench_dialects.py``, in a process of its own.

Every stream is ``--chunks`` text deltas with each provider's framing (Anthropic:
``message_start``, a text block, the deltas, ``message_delta`` with the usage,
``message_stop``; Gemini: one ``GenerateContentResponse`` per delta, CRLF-framed, the last
with ``finishReason: STOP`` and ``usageMetadata``), built once per request body and written
at once, as ``tests.support.fake_upstream --chunks`` serves OpenAI streams: the bench
measures the gateway, not this server. Served by the test suite's ``FakeUpstream`` (its
public API): ``POST /v1/messages`` and ``POST /v1beta/models/{m}:streamGenerateContent``.

    python bench/fake_providers.py --port 0 --chunks 200     # prints READY http://...
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests.support.fake_upstream import Exchange, FakeUpstream, frame_chunks

WORDS = (" The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def anthropic_events(chunks: int, model: str) -> list[bytes]:
    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {_dump({'type': kind, **data})}\n\n".encode()

    message = {
        "id": "msg_01BenchFakeProviders",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 0, "output_tokens": 1},
    }
    out = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    out += [
        event(
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": WORDS[i % 10]}},
        )
        for i in range(chunks)
    ]
    out += [event("content_block_stop", {"index": 0}),
            event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                    "usage": {"output_tokens": chunks}}),
            event("message_stop", {})]  # fmt: skip
    return out


def gemini_events(chunks: int, model: str) -> list[bytes]:
    def event(text: str, usage: int, finish: bool) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"},
                                     "index": 0}  # fmt: skip
        if finish:
            candidate["finishReason"] = "STOP"
        body = {"candidates": [candidate], "modelVersion": model, "responseId": "benchResp01",
                "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": usage,
                                  "totalTokenCount": 12 + usage}}  # fmt: skip
        return f"data: {_dump(body)}\r\n\r\n".encode()

    return [event(WORDS[i % 10], i + 1, i == chunks - 1) for i in range(chunks)]


@dataclass
class Providers:
    chunks: int
    cache: dict[tuple[str, bytes], bytes] = field(default_factory=dict)

    async def run(self, ex: Exchange) -> None:
        request = ex.request
        key = (request.path, request.body)
        framed = self.cache.get(key)
        if framed is None:
            model = str(json.loads(request.body or b"{}").get("model") or "bench-model")
            if request.path == "/v1/messages":
                events = anthropic_events(self.chunks, model)
            elif request.path.endswith(":streamGenerateContent"):
                events = gemini_events(self.chunks, request.path.rsplit("/", 1)[1])
            else:
                await ex.send_response(404, b'{"error":"not a bench route"}')
                return
            if len(self.cache) >= 64:
                self.cache.clear()
            framed = self.cache[key] = frame_chunks(events)
        await ex.send_whole_stream(framed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FakeUpstream(port=args.port, default=Providers(args.chunks)) as server:
        print(f"READY {server.url}", flush=True)
        while not stop.wait(1.0):
            server.reset()  # keeps its records from growing over a long run
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
