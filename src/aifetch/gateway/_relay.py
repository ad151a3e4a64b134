"""The streaming relay: upstream SSE bytes to the caller, as they arrive.

Past the commit point (``_commit``) each upstream read is cut at its last complete SSE
block (``SSEBlockSplitter.feed_joined``: one search per read) and goes out in one write,
whole blocks only, so a final ``error`` event can never fuse with half an upstream event.
Most reads need nothing more (docs/ARCHITECTURE.md, hot-path rules): the batch is looked
at once for the few bytes that matter (``error``, a ``"usage"`` that is not null,
``[DONE]``, a configured secret) and relayed whole when none is there. Only a batch that
has one is cut into blocks, and only such blocks are decoded. Pipe hooks see every event,
so with hooks every block is decoded.

A failure after the commit point ends the stream with an OpenAI-shaped SSE ``error`` event
and no ``data: [DONE]`` (docs/ARCHITECTURE.md, the commit rule), so a truncated answer
never looks complete. The stream is complete only when an event's data is exactly
``[DONE]``.

That is the rule for chat chunks. A stream in another wire format (the Responses API, or
Anthropic's Messages relayed byte-exact) brings its own filter, completing event and error
event with it (``StreamSource.rules``, ``_rules``); the loop is the same.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec

import aifetch
from aifetch.sse import SSEBlockSplitter, encode_event, parse_block

from . import _codes as codes
from ._call import Call, EventHook, Reply, StreamSource
from ._context import RequestContext
from ._downstream import Downstream
from ._errors import GatewayError
from ._events import error_message_of, is_error_data
from ._secrets import Secrets
from ._usage import Usage, UsageFields

__all__ = ["RelayOutcome", "relay", "strip_null_usage"]

log = logging.getLogger("aifetch.gateway")


class _UsageChunk(msgspec.Struct):
    choices: list[Any] | None = None
    usage: UsageFields | None = None


_usage_decoder = msgspec.json.Decoder(_UsageChunk)

_USAGE = b'"usage"'
_COMPACT_NULL_USAGE = b',"usage":null'
# The "usage": null member OpenAI adds to every chunk once include_usage is set, however
# the upstream spaces it: after another member, before one, or alone. A quote inside a
# JSON string is escaped, so `,"usage"` and `{"usage"` occur only as a key.
_NULL_USAGE = re.compile(
    rb',[ \t\r\n]*"usage"[ \t\r\n]*:[ \t\r\n]*null(?=[ \t\r\n]*[,}])'
    rb'|(?<=\{)[ \t\r\n]*"usage"[ \t\r\n]*:[ \t\r\n]*null[ \t\r\n]*,?'
)


_USAGE_OBJECT = b'"usage":{'


def strip_null_usage(batch: bytes) -> bytes:
    """``batch`` without the ``"usage": null`` members the gateway caused by asking for
    usage: the caller who did not ask gets the bytes it would have got."""
    return _stripped(batch)[0]


def _stripped(batch: bytes) -> tuple[bytes, int]:
    """``strip_null_usage``, and where the first usage object left starts (-1: none)."""
    stripped = batch.replace(_COMPACT_NULL_USAGE, b"")  # as OpenAI writes it: one pass in C
    at = stripped.find(_USAGE)
    first = at
    while at >= 0:
        if not stripped.startswith(b":{", at + len(_USAGE)):
            # Spaced JSON: the regex (~20x the replace on a whole batch) only then.
            stripped = _NULL_USAGE.sub(b"", stripped)
            return stripped, stripped.find(_USAGE)
        at = stripped.find(_USAGE, at + len(_USAGE))
    return stripped, first


# A usage object however it is spaced (null members aside).
_USAGE_OBJECT_ANY = re.compile(rb'"usage"[ \t\r\n]*:[ \t\r\n]*\{')


class RelayOutcome:
    """What the relay saw: usage, the final error (if any), completion."""

    __slots__ = ("caller_gone", "done", "error", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.error: GatewayError | None = None
        self.done = False  # an event whose data is exactly [DONE] went out
        # The caller left before the stream ended (set before the response is ended, so
        # a disconnect noticed after a complete answer does not count).
        self.caller_gone = False


class _BlockFilter:
    """What the relay does to each batch of complete blocks."""

    __slots__ = ("hooks", "outcome", "secrets", "strip", "upstream")

    def __init__(self, outcome: RelayOutcome, strip: bool, reply: Reply) -> None:
        self.outcome = outcome
        self.strip = strip
        self.hooks: list[EventHook] = reply.hooks
        self.upstream = reply.upstream or "?"
        self.secrets = reply.source.secrets if reply.source is not None else Secrets(())

    def process(self, batch: bytes) -> bytes:
        """The bytes to send for ``batch`` (whole blocks), and what it says noted.

        A handful of passes over the batch in C (the strip, ``error``, the secrets) and
        one short search from its end (``[DONE]``); the blocks are cut only from the first
        one that holds something to look at, usually a block or two from the end.
        """
        if batch.find(_USAGE) < 0:
            usage_at = -1
        elif self.strip:
            batch, usage_at = _stripped(batch)
        else:  # null members are the rule when the caller asked for usage itself
            match = _USAGE_OBJECT_ANY.search(batch)
            usage_at = match.start() if match is not None else -1
        if self.hooks:
            batch = self._by_block(batch)
        else:
            cut = _first_look(batch, usage_at)
            if cut >= 0:
                # The blocks before the first one that needs a look go out as they are.
                batch = batch[:cut] + self._by_block(batch[cut:]) if cut else self._by_block(batch)
        return self.secrets.scrub(batch)

    def _by_block(self, batch: bytes) -> bytes:
        blocks = SSEBlockSplitter().feed(batch)
        keep: list[bytes] = []
        for block in blocks:
            if block.find(b"error") >= 0 and self._error_in(block):
                break  # nothing after an error event is relayed
            if block.find(_USAGE) >= 0 and self._usage_in(block):
                continue
            if block.find(b"[DONE]") >= 0:
                event = parse_block(block, stream_start=False)
                if event is not None and event.data == "[DONE]":
                    self.outcome.done = True
            keep.append(block)
        if self.hooks:
            keep = self._hooked(keep)
        return b"".join(keep)

    def _error_in(self, block: bytes) -> bool:
        event = parse_block(block, stream_start=False)
        if event is None or not (event.event == "error" or is_error_data(event.data)):
            return False
        # An upstream may quote the gateway's own key back in its message.
        message = self.secrets.scrub_text(error_message_of(event.data))
        self.outcome.error = codes.UPSTREAM_ERROR_EVENT(
            f"upstream '{self.upstream}' sent an error: {message}"
        )
        return True

    def _usage_in(self, block: bytes) -> bool:
        """Record usage; True when ``block`` is the usage chunk and must be stripped."""
        event = parse_block(block, stream_start=False)
        if event is None or not event.data.startswith("{"):
            return False
        try:
            chunk = _usage_decoder.decode(event.data)
        except msgspec.DecodeError:
            return False
        if chunk.usage is None:
            return False
        self.outcome.usage = chunk.usage.value()
        return self.strip and chunk.choices == []

    def _hooked(self, blocks: list[bytes]) -> list[bytes]:
        out = []
        for block in blocks:
            event = parse_block(block, stream_start=False)
            if event is None:
                out.append(block)
                continue
            result: aifetch.sse.ServerSentEvent | None = event
            for hook in self.hooks:
                result = hook(result) if result is not None else None
            if result is event:
                out.append(block)
            elif result is not None:
                out.append(_encode(result))
        return out


def _last_done(batch: bytes) -> int:
    """Where the last line that ends in ``[DONE]`` is, searched from the end (the stream's
    last event), or -1. A ``[DONE]`` inside JSON text is never at a line's end (a JSON
    string holds no raw line break), so the model's own "[DONE]" is passed over."""
    at = batch.rfind(b"[DONE]")
    while at >= 0 and batch[at + 6 : at + 7] not in (b"\n", b"\r"):
        at = batch.rfind(b"[DONE]", 0, at)
    return at


def _first_look(batch: bytes, usage_at: int) -> int:
    """Where the first block that needs a look starts (an ``error``, ``[DONE]``, or the
    usage object at ``usage_at``), or -1 when none does."""
    first = batch.find(b"error")
    for at in (_last_done(batch), usage_at):
        if at >= 0 and (first < 0 or at < first):
            first = at
    if first <= 0:
        return first
    # LF LF always ends a block, whatever the stream's other line ends (the first LF ends a
    # line, alone or in a CRLF; the second is an empty line), and no field line holds one:
    # the last LF LF before the needle ends the block before the one that holds it. None
    # (CR or CRLF endings throughout): the whole batch is cut into blocks.
    end = batch.rfind(b"\n\n", 0, first)
    return end + 2 if end >= 0 else 0


def _encode(event: aifetch.sse.ServerSentEvent) -> bytes:
    return encode_event(
        event.data,
        event=None if event.event == "message" else event.event,
        id=event.id or None,
        retry=event.retry,
    )


async def relay(ctx: RequestContext, call: Call, reply: Reply, down: Downstream) -> RelayOutcome:
    """Relay the committed stream in ``reply`` to ``down``; never raises for upstream faults.

    The caller's response is ended here, with an error event when the stream failed.
    """
    source = reply.source
    flight = ctx.flight
    assert source is not None
    assert flight is not None
    outcome = RelayOutcome()
    rules = source.rules
    filt = rules.Filter(outcome, not call.fields.wants_usage, reply)
    name = filt.upstream
    try:
        out = filt.process(b"".join(source.held))
        if out and flight.reason is None:
            await down.write(out)
        if outcome.error is None:
            await _pump(source, filt, down, ctx)
    except aifetch.AbortError:
        if flight.reason == "shutdown":
            outcome.error = codes.SHUTTING_DOWN("the gateway is shutting down")
    except aifetch.TimeoutError as exc:
        outcome.error = codes.UPSTREAM_TIMEOUT(f"upstream '{name}' timed out ({exc.phase})")
    except (aifetch.NetworkError, aifetch.SSEError, OSError):
        outcome.error = codes.UPSTREAM_RESET(f"upstream '{name}' broke the connection mid-stream")
    except Exception:
        # A bug (in a pipe's event hook, say) must still end the stream as an error.
        log.exception("stream relay failed")
        outcome.error = codes.INTERNAL("the gateway failed while relaying the stream")
    finally:
        await source.close()
    if outcome.error is None and not outcome.done and flight.reason is None:
        outcome.error = codes.UPSTREAM_INCOMPLETE(
            f"upstream '{name}' ended the stream before {rules.end}"
        )
    if flight.reason == "disconnect":
        outcome.caller_gone = True
        return outcome
    await down.end(rules.error_event(outcome.error) if outcome.error is not None else b"")
    return outcome


async def _pump(
    source: StreamSource, filt: _BlockFilter, down: Downstream, ctx: RequestContext
) -> None:
    """The hot loop: one upstream read → its complete blocks → one send."""
    splitter = source.splitter
    outcome = filt.outcome
    flight = ctx.flight
    assert flight is not None
    async for chunk in source.chunks:
        batch = splitter.feed_joined(chunk)
        if not batch:
            continue
        out = filt.process(batch)
        if out and flight.reason is None:
            await down.write(out)
        if outcome.error is not None:
            return
    # What is left is an unterminated last block: not an event (HTML §9.2.6, at the end of
    # the stream an incomplete event is discarded), so it is not relayed: sent, it would
    # fuse with the error event that follows into one garbled event.
    splitter.close()
