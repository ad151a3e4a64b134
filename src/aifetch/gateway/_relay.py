"""The streaming relay: upstream SSE bytes to the caller, block by block, as they arrive.

Past the commit point (see ``_upstreams``) each upstream read is cut into raw SSE blocks
with ``SSEBlockSplitter`` and sent on unchanged, whole blocks only, so a final ``error``
event can never fuse with half an upstream event. Looking inside a block is kept to
substring tests (``error``, ``"usage"``, and ``[DONE]`` on a read's last block); a block is
decoded only when it may be an error event or the usage chunk (``"choices":[]`` with a
``usage`` object), or when a pipe asked to see events.

A failure after the commit point ends the stream with an OpenAI-shaped SSE ``error`` event
and no ``data: [DONE]`` (docs/ARCHITECTURE.md, the commit rule), so a truncated answer
never looks complete.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

import aifetch
from aifetch.sse import encode_event, parse_block

from . import _codes as codes
from ._call import Call, EventHook, Reply, StreamSource
from ._context import RequestContext
from ._downstream import Downstream
from ._errors import GatewayError, error_event
from ._events import error_message_of, is_error_data

__all__ = ["RelayOutcome", "relay"]

log = logging.getLogger("aifetch.gateway")


class _UsageFields(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _UsageChunk(msgspec.Struct):
    choices: list[Any] | None = None
    usage: _UsageFields | None = None


_usage_decoder = msgspec.json.Decoder(_UsageChunk)


class RelayOutcome:
    """What the relay saw: usage, the final error (if any), timing."""

    __slots__ = ("caller_gone", "done", "error", "usage")

    def __init__(self) -> None:
        self.usage: tuple[int, int] | None = None
        self.error: GatewayError | None = None
        self.done = False
        # The caller left before the stream ended (set before the response is ended, so
        # a disconnect noticed after a complete answer does not count).
        self.caller_gone = False


class _BlockFilter:
    """Per-batch block checks: error events, the usage chunk, pipe hooks."""

    __slots__ = ("hooks", "outcome", "secrets", "strip", "upstream")

    def __init__(self, outcome: RelayOutcome, strip: bool, reply: Reply) -> None:
        self.outcome = outcome
        self.strip = strip
        self.hooks: list[EventHook] = reply.hooks
        self.upstream = reply.upstream or "?"
        self.secrets = reply.source.secrets if reply.source is not None else ()

    def process(self, blocks: list[bytes]) -> bytes:
        # ``keep`` stays None (no copy) until a block is dropped: the usual case.
        keep: list[bytes] | None = None
        # bytes.find rather than `in` throughout: on bytes, `in` first tries its operand as
        # an int, an exception raised and cleared per call (~50 ns each, CPython 3.11).
        for i, block in enumerate(blocks):
            if block.find(b"error") >= 0 and self._error_in(block):
                if keep is None:
                    keep = blocks[:i]
                break
            if block.find(b'"usage"') >= 0:
                if block.find(b'"usage":null') >= 0:
                    if self.strip:
                        if keep is None:
                            keep = blocks[:i]
                        keep.append(_without_null_usage(block))
                        continue
                elif self._usage_in(block):
                    if keep is None:
                        keep = blocks[:i]
                    continue
            if keep is not None:
                keep.append(block)
        if keep is None:
            keep = blocks
        if keep and keep[-1].find(b"[DONE]") >= 0:
            self.outcome.done = True
        if self.hooks:
            keep = self._hooked(keep)
        if not keep:
            return b""
        return keep[0] if len(keep) == 1 else b"".join(keep)

    def _error_in(self, block: bytes) -> bool:
        event = parse_block(block, stream_start=False)
        if event is None or not (event.event == "error" or is_error_data(event.data)):
            return False
        message = error_message_of(event.data)
        # An upstream may quote the gateway's own key back in its message.
        for secret in self.secrets:
            message = message.replace(secret.decode(), "[redacted]")
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
        self.outcome.usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
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


def _without_null_usage(block: bytes) -> bytes:
    """``block`` without the ``"usage":null`` member OpenAI adds to every chunk once
    ``include_usage`` is set: the caller who did not ask gets the bytes it would have got."""
    stripped = block.replace(b',"usage":null', b"")
    if len(stripped) == len(block):
        stripped = block.replace(b'"usage":null,', b"")
    return stripped


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
    filt = _BlockFilter(outcome, not call.fields.wants_usage, reply)
    name = filt.upstream
    try:
        out = filt.process(source.held)
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
        await source.response.aclose()
    if outcome.error is None and not outcome.done and flight.reason is None:
        outcome.error = codes.UPSTREAM_INCOMPLETE(
            f"upstream '{name}' ended the stream before [DONE]"
        )
    if flight.reason == "disconnect":
        outcome.caller_gone = True
        return outcome
    await down.end(error_event(outcome.error) if outcome.error is not None else b"")
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
        blocks = splitter.feed(chunk)
        if not blocks:
            continue
        out = filt.process(blocks)
        if out and flight.reason is None:
            await down.write(out)
        if outcome.error is not None:
            return
    tail = splitter.close()
    if tail:
        out = filt.process([tail])
        if out and flight.reason is None:
            await down.write(out)
