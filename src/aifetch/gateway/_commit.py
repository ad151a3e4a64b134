"""The commit point of a stream: read the upstream until its first content event.

Until then nothing has reached the caller, so a failure (an error event, a stream that
ends or sends only comments and role chunks) can still be retried or handed to the next
target (docs/ARCHITECTURE.md, the commit rule). Everything read meanwhile is held, whole
SSE blocks only, and relayed first once the stream commits. Which event is content and
which an error is the stream's wire format's to say (``_rules``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aifetch
from aifetch.sse import SSEBlockSplitter, parse_block

from . import _codes as codes
from ._call import Reply, StreamSource
from ._failure import Failure
from ._rules import CHAT_RULES, StreamRules, Verdict
from ._upstream import Upstream

__all__ = ["Scan", "Verdict", "open_stream", "scan", "scan_batch"]

# What a stream may send before its first content event (held, not yet relayed).
MAX_HELD = 1024 * 1024


class Scan:
    """The blocks of one stream before its commit point, and what they say."""

    __slots__ = ("error", "held", "rules", "verdict")

    def __init__(self, rules: StreamRules = CHAT_RULES) -> None:
        self.rules = rules
        self.held: list[bytes] = []
        self.verdict: Verdict = "waiting"
        self.error = ""  # the upstream's message, when the verdict is "failed"


def scan_batch(batch: bytes, state: Scan) -> Verdict:
    """``scan`` over one read's complete blocks, joined (``SSEBlockSplitter.feed_joined``):
    blocks are cut and parsed only up to the commit point, and what follows it in the read
    is held as one piece, unread (an upstream that sends its whole answer at once would
    otherwise have every block cut here)."""
    if batch.find(b"\r") >= 0:  # line ends other than LF: the splitter knows them all
        return scan(SSEBlockSplitter().feed(batch), state)
    pos, size = 0, len(batch)
    while pos < size:
        if state.verdict == "committed":
            state.held.append(batch[pos:])
            return "committed"
        # An empty line at a block's start is a block of its own; else LF LF ends one.
        end = pos + 1 if batch[pos] == 0x0A else batch.find(b"\n\n", pos) + 2
        if scan((batch[pos:end],), state) == "failed":
            return "failed"
        pos = end
    return state.verdict


def scan(blocks: Iterable[bytes], state: Scan) -> Verdict:
    """Hold ``blocks`` in ``state`` and return its verdict. Once committed, the rest of
    the blocks are held unread (they go out with the first content event)."""
    for block in blocks:
        if state.verdict == "committed":
            state.held.append(block)
            continue
        event = parse_block(block, stream_start=not state.held)
        if event is None:
            state.held.append(block)
            continue
        verdict = state.rules.verdict(event)
        if verdict == "failed":
            state.verdict, state.error = "failed", state.rules.error_message(event)
            return "failed"
        state.held.append(block)
        if verdict == "committed":
            state.verdict = "committed"
    return state.verdict


async def open_stream(
    upstream: Upstream,
    resp: aifetch.AsyncResponse,
    headers: list[tuple[str, str]],
    rules: StreamRules,
) -> Reply | Failure:
    """Read ``resp`` up to its first content event (by ``rules``): the committed
    ``Reply``, or why the stream was abandoned before anything reached the caller."""
    chunks: AsyncIterator[bytes] = aiter(resp.body)
    splitter = SSEBlockSplitter()
    state = Scan(rules)
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_HELD:
            # Comments or role chunks without end: holding them all would be unbounded.
            await resp.aclose()
            message = f"upstream '{upstream.name}' sent {MAX_HELD} bytes without content"
            return Failure(codes.UPSTREAM_NO_CONTENT, message)
        batch = splitter.feed_joined(chunk)
        if batch and scan_batch(batch, state) != "waiting":
            break
    else:
        tail = splitter.close()
        scan([tail] if tail else [], state)
    if state.verdict == "committed":
        source = StreamSource(resp, chunks, splitter, state.held, rules, upstream.secrets)
        return Reply(resp.status, headers, source=source)
    await resp.aclose()
    if state.verdict == "failed":
        message = upstream.secrets.scrub_text(state.error)
        return Failure(
            codes.UPSTREAM_ERROR_EVENT, f"upstream '{upstream.name}' sent an error: {message}"
        )
    message = f"upstream '{upstream.name}' ended the stream before any content"
    return Failure(codes.UPSTREAM_EMPTY, message)
