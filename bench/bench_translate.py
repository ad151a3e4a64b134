"""CPU per chunk of the dialect stream translators, beside the byte relay's splitting.

Run:  .venv/bin/python bench/bench_translate.py [--events N] [--rounds R] [--seed S]

Three long streams, each cut into reads of seeded random size 1-8 KiB:

* Anthropic → OpenAI: a Messages stream of N events as the API frames them (``event:`` +
  ``data:``), text deltas with a tool call every 50 events whose arguments come in 8
  ``input_json_delta`` pieces, pings among them;
* Gemini → OpenAI: N ``streamGenerateContent?alt=sse`` events, each a whole response with
  one text part and the ``usageMetadata`` Gemini repeats on every chunk;
* OpenAI → Anthropic (the gateway's ``/v1/messages``): N ``chat.completion.chunk`` events.

For each stream the same reads go through, in one process, interleaved per round, best of
R rounds (CPU time, ``time.process_time``):

* ``relay``: ``SSEBlockSplitter.feed`` per read, what the gateway's byte-exact relay does
  to every upstream read (its cost per chunk is the baseline);
* ``decode``: ``SSEDecoder.feed`` per read (the first half of translating);
* ``translate``: ``SSEDecoder`` then the dialect's translator, one ``b"".join`` per read,
  as the client pipe does it.

Before timing, each translation is checked to end the way it must (``[DONE]`` or
``message_stop``). The gateway's target is a translated stream at most 2× the relay's
per-chunk cost; the translator's own share is ``translate`` − ``decode``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from typing import Any

from aifetch.providers import MessagesStreamTranslator, StreamTranslator, dialect
from aifetch.sse import SSEBlockSplitter, SSEDecoder

WORDS = [" The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def anthropic_stream(events: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out: list[str] = []

    def event(kind: str, data: dict[str, Any]) -> None:
        out.append(f"event: {kind}\ndata: {_dump({'type': kind, **data})}\n\n")

    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 472, "cache_read_input_tokens": 0, "output_tokens": 1},
    }
    event("message_start", {"message": message})
    index = 0
    event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
    made = 2
    while made < events - 3:
        if made % 50 == 0:
            event("content_block_stop", {"index": index})
            index += 1
            block = {"type": "tool_use", "id": f"toolu_{index:024d}", "name": "get_weather"}
            event("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
            for piece in [
                '{"loc',
                'ation"',
                ': "San',
                " Franc",
                "isco,",
                " CA",
                '", "unit',
                '": "c"}',
            ]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                event("content_block_delta", {"index": index, "delta": delta})
            event("content_block_stop", {"index": index})
            index += 1
            start = {"index": index, "content_block": {"type": "text", "text": ""}}
            event("content_block_start", start)
            made += 12
        elif made % 97 == 0:
            event("ping", {})
            made += 1
        else:
            delta = {"type": "text_delta", "text": rng.choice(WORDS)}
            event("content_block_delta", {"index": index, "delta": delta})
            made += 1
    event("content_block_stop", {"index": index})
    event(
        "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": events}}
    )
    event("message_stop", {})
    return "".join(out).encode()


def gemini_stream(events: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(events):
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": rng.choice(WORDS)}], "role": "model"},
            "index": 0,
        }
        if i == events - 1:
            candidate["finishReason"] = "STOP"
        usage = {
            "promptTokenCount": 9,
            "candidatesTokenCount": i + 1,
            "totalTokenCount": 10 + i,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
        }
        response = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "bH6LaZW8Fp_3nsEPqtaSwQ4",
        }
        out.append(f"data: {_dump(response)}\r\n\r\n")
    return "".join(out).encode()


def openai_stream(events: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(events):
        delta: dict[str, Any] = {"content": rng.choice(WORDS)}
        if i == 0:
            delta = {"role": "assistant", "content": "", "refusal": None}
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": "stop" if i == events - 1 else None,
        }
        chunk = {
            "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
            "object": "chat.completion.chunk",
            "created": 1_718_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0ba0d124f1",
            "choices": [choice],
        }
        out.append(f"data: {_dump(chunk)}\n\n")
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def cut_reads(stream: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    reads, pos = [], 0
    while pos < len(stream):
        size = rng.randint(1024, 8192)
        reads.append(stream[pos : pos + size])
        pos += size
    return reads


def relay(reads: list[bytes], _: Any) -> int:
    splitter = SSEBlockSplitter()
    return sum(len(splitter.feed(read)) for read in reads)


def decode(reads: list[bytes], _: Any) -> int:
    decoder = SSEDecoder()
    return sum(len(decoder.feed(read)) for read in reads)


def translate(reads: list[bytes], make: Callable[[], StreamTranslator]) -> bytes:
    decoder = SSEDecoder()
    translator = make()
    feed = translator.feed
    out = []
    for read in reads:
        data = b"".join([feed(event) for event in decoder.feed(read)])
        if data:
            out.append(data)
    out.append(translator.close())
    return b"".join(out)


def best(fn: Callable[[list[bytes], Any], Any], reads: list[bytes], arg: Any) -> float:
    gc.collect()
    started = time.process_time()
    fn(reads, arg)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    anthropic = dialect("anthropic")
    gemini = dialect("gemini")
    cases: list[tuple[str, bytes, Callable[[], StreamTranslator], bytes]] = [
        (
            "Anthropic → OpenAI",
            anthropic_stream(args.events, args.seed),
            lambda: anthropic.stream_translator(created=1),
            b"data: [DONE]\n\n",
        ),
        (
            "Gemini → OpenAI",
            gemini_stream(args.events, args.seed),
            lambda: gemini.stream_translator(created=1),
            b"data: [DONE]\n\n",
        ),
        (
            "OpenAI → Anthropic",
            openai_stream(args.events, args.seed),
            lambda: MessagesStreamTranslator(model="claude-sonnet-4-5"),
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ),
    ]
    print(f"{args.events} events per stream, reads of 1-8 KiB, best of {args.rounds} rounds (CPU)")
    print(
        f"{'stream':<20} {'MB':>5} {'events':>7} {'relay µs':>9} {'decode µs':>10} {'translate µs':>13} {'÷ relay':>8}"
    )
    for name, stream, make, end in cases:
        reads = cut_reads(stream, args.seed)
        output = translate(reads, make)
        assert output.endswith(end), (name, output[-120:])
        events = relay(reads, None)
        timings: dict[str, float] = {"relay": 1e9, "decode": 1e9, "translate": 1e9}
        for _ in range(args.rounds):
            for label, fn, arg in (
                ("relay", relay, None),
                ("decode", decode, None),
                ("translate", translate, make),
            ):
                timings[label] = min(timings[label], best(fn, reads, arg))  # type: ignore[arg-type]
        per = {k: v / events * 1e6 for k, v in timings.items()}
        print(
            f"{name:<20} {len(stream) / 1e6:>5.2f} {events:>7} {per['relay']:>9.2f} {per['decode']:>10.2f}"
            f" {per['translate']:>13.2f} {per['translate'] / per['relay']:>7.1f}×"
        )


if __name__ == "__main__":
    main()
