"""Event stream decoding speed: aifetch vs httpx-sse vs openai-python, on the same bytes.

Run:  .venv/bin/python bench/bench_sse.py [--events N] [--rounds R] [--seed S]

The stream is N OpenAI ``chat.completion.chunk`` events (``data: {json}\\n\\n``, ~230-byte
JSON) and ``data: [DONE]``, cut into reads of random size 1-8 KiB.  Each round runs every
decoder once over the same reads, in turn, so load changes hit all of them alike; the
best round of each is reported.  Before timing, every decoder must return the same events.

How each competitor is fed, copying how its own library feeds it:
* httpx-sse 0.4: ``EventSource.iter_sse`` decodes ``response.iter_text()`` (httpx's
  ``TextDecoder``, an incremental UTF-8 decoder with replacement) into httpx-sse's own
  ``SSELineDecoder``, strips ``"\\n"`` from each line and calls ``SSEDecoder.decode`` per line.
* openai-python: ``Stream`` calls ``SSEDecoder().iter_bytes(response.iter_bytes())``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from aifetch.sse import SSEBlockSplitter, SSEDecoder

Decoded = list[tuple[str, str, str]]  # (event, data, id) per event


def openai_stream(events: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
    out = []
    for i in range(events):
        delta: dict[str, Any] = {"content": rng.choice(words)}
        if i == 0:
            delta = {"role": "assistant", "content": "", "refusal": None}
        chunk = {
            "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
            "object": "chat.completion.chunk",
            "created": 1_718_000_000 + i // 50,
            "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default",
            "system_fingerprint": "fp_0ba0d124f1",
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": "stop" if i == events - 1 else None,
                }
            ],
            "usage": None,
        }
        out.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def cut_reads(stream: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    reads, pos = [], 0
    while pos < len(stream):
        size = rng.randint(1024, 8192)
        reads.append(stream[pos : pos + size])
        pos += size
    return reads


# ---- the decoders, each fed the way its library feeds it ------------------------------


def run_aifetch(reads: list[bytes]) -> Decoded:
    decoder = SSEDecoder()
    out = [(e.event, e.data, e.id) for read in reads for e in decoder.feed(read)]
    decoder.close()
    return out


def count_aifetch(reads: list[bytes]) -> int:
    decoder = SSEDecoder()
    n = 0
    for read in reads:
        n += len(decoder.feed(read))
    return n


def count_aifetch_splitter(reads: list[bytes]) -> int:
    splitter = SSEBlockSplitter()
    n = 0
    for read in reads:
        n += len(splitter.feed(read))
    splitter.close()
    return n


def iter_httpx_sse(reads: list[bytes]) -> Iterator[Any]:
    from httpx._decoders import TextDecoder
    from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
    from httpx_sse._decoders import SSELineDecoder

    text_decoder, line_decoder, decoder = TextDecoder("utf-8"), SSELineDecoder(), HttpxSSEDecoder()

    def lines() -> Iterator[str]:
        for read in reads:
            yield from line_decoder.decode(text_decoder.decode(read))
        yield from line_decoder.decode(text_decoder.flush())
        yield from line_decoder.flush()

    for line in lines():
        event = decoder.decode(line.rstrip("\n"))
        if event is not None:
            yield event


def iter_openai(reads: list[bytes]) -> Iterator[Any]:
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    return OpenAISSEDecoder().iter_bytes(iter(reads))


def as_decoded(events: Iterator[Any]) -> Decoded:
    return [(e.event or "message", e.data, e.id or "") for e in events]


def count(events: Iterator[Any]) -> int:
    n = 0
    for _ in events:
        n += 1
    return n


DECODERS: dict[str, Callable[[list[bytes]], int]] = {
    "aifetch SSEDecoder": count_aifetch,
    "aifetch SSEBlockSplitter": count_aifetch_splitter,
    "httpx-sse 0.4 (httpx TextDecoder + SSELineDecoder)": lambda r: count(iter_httpx_sse(r)),
    "openai-python SSEDecoder.iter_bytes": lambda r: count(iter_openai(r)),
}
VERIFY: dict[str, Callable[[list[bytes]], Decoded]] = {
    "aifetch": run_aifetch,
    "httpx-sse": lambda r: as_decoded(iter_httpx_sse(r)),
    "openai-python": lambda r: as_decoded(iter_openai(r)),
}


# ---- spec checks (WHATWG HTML §9.2.5-§9.2.6) ----------------------------------------------

SPEC_CASES: list[tuple[str, list[bytes], Decoded]] = [
    (
        "lone CR line endings",
        [b"data: a\r\rdata: b\r\r"],
        [("message", "a", ""), ("message", "b", "")],
    ),
    ("CRLF split across reads", [b"data: a\r", b"\ndata: b\r\n\r\n"], [("message", "a\nb", "")]),
    ("data-less block with id", [b"id: 1\n\ndata: x\n\n"], [("message", "x", "1")]),
    ("data-less block with event", [b"event: e\n\ndata: x\n\n"], [("message", "x", "")]),
    ("leading BOM", [b"\xef\xbb\xbfdata: x\n\n"], [("message", "x", "")]),
    ("invalid UTF-8 -> U+FFFD", [b"data: a\xffb\n\n"], [("message", "a\ufffdb", "")]),
    ("U+2028 is not a line end", ["data: a\u2028b\n\n".encode()], [("message", "a\u2028b", "")]),
    ("unterminated last block", [b"data: a\n\ndata: b"], [("message", "a", "")]),
]


def spec_report() -> list[str]:
    rows = []
    for label, reads, expected in SPEC_CASES:
        cells = []
        for name, run in VERIFY.items():
            try:
                got: Any = run(reads)
            except Exception as exc:  # a competitor may raise on input the spec accepts
                got = f"raised {type(exc).__name__}"
            cells.append(f"{name}: {'ok' if got == expected else f'WRONG {got!r}'}")
        rows.append(f"  {label:<28} " + " | ".join(cells))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    stream = openai_stream(args.events, args.seed)
    reads = cut_reads(stream, args.seed)
    expected = VERIFY["aifetch"](reads)
    for name, verify in VERIFY.items():
        assert verify(reads) == expected, f"{name} decoded the benchmark stream differently"
    n_events = len(expected)
    print(f"stream: {n_events} events, {len(stream):,} bytes, {len(reads)} reads of 1-8 KiB")

    best = dict.fromkeys(DECODERS, float("inf"))
    for _ in range(args.rounds):
        for name, run in DECODERS.items():
            gc.collect()
            start = time.perf_counter()
            got = run(reads)
            elapsed = time.perf_counter() - start
            assert got == n_events, (name, got)
            best[name] = min(best[name], elapsed)

    rate = {name: n_events / seconds for name, seconds in best.items()}
    ours = rate["aifetch SSEDecoder"]
    print(f"\nbest of {args.rounds} interleaved rounds:")
    print(f"  {'decoder':<52} {'events/s':>12} {'us/event':>9} {'aifetch SSEDecoder is':>22}")
    for name, value in rate.items():
        ratio = f"{ours / value:.2f}x" if name != "aifetch SSEDecoder" else ""
        print(f"  {name:<52} {value:>12,.0f} {1e6 / value:>9.2f} {ratio:>22}")
    print("\nspec checks (HTML §9.2.5-§9.2.6):")
    print("\n".join(spec_report()))


if __name__ == "__main__":
    main()
