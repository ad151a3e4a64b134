"""Fast loopback HTTP/1.1 servers for the client benchmarks, each in a process of its own.

The benches measure the *client's* CPU, so the server must be cheap and live in another
process: a bare ``asyncio.Protocol`` on uvloop that answers every request with bytes built
once at start-up. It speaks just enough HTTP/1.1 for keep-alive clients: a request head,
a ``Content-Length`` body (every client benched sends one), any number of requests per
connection.

Modes:

* ``chat``: ``POST /v1/chat/completions`` answers a small ``chat.completion`` JSON.
* ``stream``: ``POST /v1/chat/completions`` answers ``--chunks`` ``chat.completion.chunk``
  SSE events and ``data: [DONE]``, chunked-encoded in 64 KiB frames, written at once.

Run directly, it prints ``READY http://127.0.0.1:<port>`` when it listens. ``serve()`` is
the parent's side: it starts the process, waits for that line, and stops the process by
its PID on the way out, whatever happened. The child also exits by itself when its parent
goes away or after ``--lifetime`` seconds, so a crashed bench never leaves it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CHAT_PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini-2024-07-18"
REPLY_TEXT = "Hello! How can I help you today?"
# The same request body for every client, so every client encodes the same work.
REQUEST_BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 16,
}

_HEAD_LIMIT = 64 * 1024  # a request head longer than this is refused, not buffered forever
_FRAME = 64 * 1024  # chunked-encoding frame size of the stream body

# Words cycled through the stream's deltas: short tokens, as a model streams them.
_WORDS = (" The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")


def chat_completion_body() -> bytes:
    """A realistic non-stream ``chat.completion`` (the shape of OpenAI's reference)."""
    return json.dumps(
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": REPLY_TEXT,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 19,
                "completion_tokens": 10,
                "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_06737a9306",
        },
        separators=(",", ":"),
    ).encode()


def _chunk(delta: dict[str, object], finish_reason: str | None) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_06737a9306",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        },
        separators=(",", ":"),
    ).encode()


def stream_events(chunks: int) -> bytes:
    """``chunks`` SSE events as OpenAI sends them (role first, ``stop`` last), then [DONE]."""
    if chunks < 2:
        raise ValueError("a chat stream has at least a first and a last chunk")
    parts = [b"data: " + _chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    for i in range(chunks - 2):
        parts.append(b"data: " + _chunk({"content": _WORDS[i % len(_WORDS)]}, None))
    parts.append(b"data: " + _chunk({}, "stop"))
    parts.append(b"data: [DONE]")
    return b"\n\n".join(parts) + b"\n\n"


def stream_text(chunks: int) -> str:
    """The content text the stream carries, for the benches to check what they read."""
    return "".join(_WORDS[i % len(_WORDS)] for i in range(chunks - 2))


def _chunked(payload: bytes) -> bytes:
    """``payload`` in HTTP/1.1 chunked framing (RFC 9112 §7.1), ``_FRAME`` bytes a frame."""
    frames = []
    for start in range(0, len(payload), _FRAME):
        piece = payload[start : start + _FRAME]
        frames.append(b"%x\r\n%b\r\n" % (len(piece), piece))
    frames.append(b"0\r\n\r\n")
    return b"".join(frames)


def build_response(mode: str, chunks: int) -> bytes:
    if mode == "chat":
        body = chat_completion_body()
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "x-request-id: req_bench\r\n"
            "\r\n"
        )
        return head.encode() + body
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Cache-Control: no-cache\r\n"
        "x-request-id: req_bench\r\n"
        "\r\n"
    )
    return head.encode() + _chunked(stream_events(chunks))


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Protocol(asyncio.Protocol):
    """One keep-alive connection: parse heads and bodies out of a buffer, answer each."""

    def __init__(self, response: bytes) -> None:
        self._response = response
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        transport = self._transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _HEAD_LIMIT:
                    self._refuse(transport)
                return
            head = bytes(buffer[:end]).lower()
            length = _content_length(head)
            if length is None:
                self._refuse(transport)  # chunked request bodies: no client here sends one
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            del buffer[:total]
            target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            if head.startswith(b"post ") and target == CHAT_PATH.encode():
                transport.write(self._response)
            else:
                transport.write(_NOT_FOUND)

    def _refuse(self, transport: asyncio.Transport) -> None:
        transport.write(_BAD_REQUEST)
        transport.close()
        self._buffer.clear()


def _content_length(head: bytes) -> int | None:
    """The request body's length: 0 with no body, None if framed some other way."""
    if b"transfer-encoding:" in head:
        return None
    marker = head.find(b"\r\ncontent-length:")
    if marker < 0:
        return 0
    start = marker + len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    value = head[start : stop if stop >= 0 else len(head)].strip()
    return int(value) if value.isdigit() else None


async def _wait_for_stop(stop: asyncio.Event, parent: int, deadline: float) -> None:
    # Exit on SIGTERM, when the parent is gone (re-parented) or when the lifetime is up:
    # the server never outlives its bench.
    while os.getppid() == parent and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()
                return


async def _main(mode: str, chunks: int, port: int, lifetime: float) -> None:
    response = build_response(mode, chunks)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await loop.create_server(
        lambda: _Protocol(response), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{bound}", flush=True)
    try:
        await _wait_for_stop(stop, os.getppid(), time.monotonic() + lifetime)
    finally:
        # Not wait_closed(): since 3.12 it waits for idle keep-alive connections too.
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("chat", "stream"), required=True)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this many s")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_main(args.mode, args.chunks, args.port, args.lifetime))


# --- the parent's side ---------------------------------------------------------------------


@contextlib.contextmanager
def serve(mode: str, *, chunks: int = 20_000, ready_within: float = 15.0) -> Iterator[str]:
    """Start a server process; yield its base URL (``http://127.0.0.1:<port>``); stop it."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--mode", mode, "--chunks", str(chunks)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield _wait_ready(process, ready_within)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[str], within: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], within)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("READY "):
        raise RuntimeError(f"the bench server (pid {process.pid}) did not start: {line!r}")
    return line.split()[1]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


if __name__ == "__main__":
    main()
