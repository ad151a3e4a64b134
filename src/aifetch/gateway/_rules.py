"""What a stream's events mean, per wire format: the pure pieces the commit point
(``_commit``) and the relay (``_relay``) take.

Three wire formats reach them. OpenAI's chat chunks: chat and legacy completions, and every
translated provider (the translation runs before the commit point, ``_kinds``). The
Responses API's events (``/v1/responses``, relayed byte-exact). Anthropic's Messages events
(a ``/v1/messages`` call relayed byte-exact to an anthropic upstream). For each, a
``StreamRules`` says which event is content (the commit point waits for the first:
docs/ARCHITECTURE.md, the commit rule), which is an error, which completes the stream,
where the usage is, and how the gateway's own final error event is written:

==================  =========================  ====================  =======================
wire                held before the commit     an error              complete; usage from
==================  =========================  ====================  =======================
chat chunks         a bare role chunk          ``event: error``, or  ``data: [DONE]``; the
                                               ``{"error": ...}``    usage chunk
Responses API       ``response.created``,      ``error``,            ``response.completed``
                    ``.in_progress``,          ``response.failed``   (or ``.incomplete``);
                    ``.queued``                                      its ``response.usage``
Anthropic Messages  ``message_start``,         ``error``             ``message_stop``;
                    ``ping``, a block start                          ``message_start`` then
                    without text, a block stop                       ``message_delta``
==================  =========================  ====================  =======================

An event is named by its ``event:`` field, or, when a proxy dropped those lines, by the
``type`` in its data. Anything else counts as content, as for chat chunks: the gateway
does not hold what it cannot read.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from aifetch.providers import openai_error_to_anthropic
from aifetch.sse import ServerSentEvent, SSEBlockSplitter, parse_block

from . import _codes as codes
from ._call import MESSAGES, MODEL_ROUTES, RESPONSES, Reply
from ._errors import GatewayError, error_event
from ._events import error_message_of, is_content_data, is_error_data
from ._relay import RelayOutcome, _BlockFilter
from ._usage import IOUsageFields

__all__ = [
    "ANTHROPIC_RULES",
    "CHAT_RULES",
    "RESPONSES_RULES",
    "STREAM_RULES",
    "StreamRules",
    "Verdict",
    "event_name",
]

# What the blocks read so far say: keep reading, the stream is committed (a content event
# arrived), or it failed (an error event came first).
Verdict = Literal["waiting", "committed", "failed"]

_encode = msgspec.json.Encoder().encode


class _Typed(msgspec.Struct):
    type: str = ""


_type_decoder = msgspec.json.Decoder(_Typed)


def event_name(event: ServerSentEvent) -> str:
    """The event's type: its ``event:`` name, else the ``type`` in its JSON data."""
    if event.event != "message":
        return event.event
    if not event.data.startswith("{"):
        return ""
    try:
        return _type_decoder.decode(event.data).type
    except msgspec.DecodeError:
        return ""


class StreamRules:
    """One wire format's rules; ``end`` names the event that completes a stream, and
    ``Filter`` is the relay's filter for one stream: ``Filter(outcome, strip, reply)``
    (``strip``: drop the usage chunk the caller did not ask for). A class, called by the
    relay itself: chat streams make no call more than before there were rules."""

    end = ""
    Filter: type[_BlockFilter] = _BlockFilter

    def verdict(self, event: ServerSentEvent) -> Verdict:
        """What ``event`` says, read before the commit point."""
        raise NotImplementedError

    def error_message(self, event: ServerSentEvent) -> str:
        """The upstream's message in an event ``verdict`` called ``"failed"``."""
        return error_message_of(event.data)

    def error_event(self, err: GatewayError) -> bytes:
        """The final event of a stream that failed after its commit point."""
        raise NotImplementedError


class _ChatRules(StreamRules):
    end = "[DONE]"

    def verdict(self, event: ServerSentEvent) -> Verdict:
        if event.event == "error" or is_error_data(event.data):
            return "failed"
        return "committed" if is_content_data(event.data) else "waiting"

    def error_event(self, err: GatewayError) -> bytes:
        return error_event(err)


# --------------------------------------------------------------------------- named events


class _EventFilter(_BlockFilter):
    """The relay's filter for a wire format of named events: a batch is searched for the
    few bytes that matter (``_MARKS``) and relayed as it is around them; only a block that
    holds one is cut out and decoded. (An upstream that writes its whole answer at once
    has its usage in the first block and its end in the last: cutting every block between
    them cost a byte-exact Anthropic relay half the chat relay's CPU again, in
    bench_dialects.py.)"""

    __slots__ = ("_usage",)
    _MARKS: tuple[bytes, ...] = ()

    def __init__(self, outcome: RelayOutcome, strip: bool, reply: Reply) -> None:
        super().__init__(outcome, strip, reply)
        self._usage: IOUsageFields | None = None

    def process(self, batch: bytes) -> bytes:
        if self.hooks or batch.find(b"\r") >= 0:
            # Hooks see every event; CR line ends make LF LF no sure block end.
            if self.hooks or any(batch.find(mark) >= 0 for mark in self._MARKS):
                batch = self._by_block(batch)
            return self.secrets.scrub(batch)
        hits = sorted(at for mark in self._MARKS for at in _all(batch, mark))
        if not hits:
            return self.secrets.scrub(batch)
        out: list[bytes] = []
        done = 0  # the bytes of batch[:done] are decided
        for at in hits:
            if at < done:
                continue  # in a block already looked at
            # LF LF ends a block, and no line holds one (LF line ends only, checked above).
            start = batch.rfind(b"\n\n", done, at)
            start = done if start < 0 else start + 2
            end = batch.find(b"\n\n", at)
            end = len(batch) if end < 0 else end + 2
            out.append(batch[done:start])
            block = batch[start:end]
            event = parse_block(block, stream_start=False)
            if event is not None and self._note(event, event_name(event)):
                return self.secrets.scrub(b"".join(out))  # an error: nothing after it
            out.append(block)
            done = end
        out.append(batch[done:])
        return self.secrets.scrub(b"".join(out))

    def _by_block(self, batch: bytes) -> bytes:
        keep: list[bytes] = []
        for block in SSEBlockSplitter().feed(batch):
            event = parse_block(block, stream_start=False)
            if event is not None and self._note(event, event_name(event)):
                break  # an error: nothing after it is relayed
            keep.append(block)
        if self.hooks:
            keep = self._hooked(keep)
        return b"".join(keep)

    def _note(self, event: ServerSentEvent, name: str) -> bool:
        """Note what ``event`` says; True when it is an error."""
        raise NotImplementedError

    def _fail(self, message: str) -> bool:
        # An upstream may quote the gateway's own key back in its message.
        message = self.secrets.scrub_text(message)
        self.outcome.error = codes.UPSTREAM_ERROR_EVENT(
            f"upstream '{self.upstream}' sent an error: {message}"
        )
        return True

    def _add_usage(self, usage: IOUsageFields | None) -> None:
        if usage is not None:
            self._usage = usage if self._usage is None else self._usage.merged(usage)
            self.outcome.usage = self._usage.value()


# ------------------------------------------------------------------ Anthropic Messages


def _all(batch: bytes, mark: bytes) -> list[int]:
    """Where ``mark`` occurs in ``batch``."""
    found = []
    at = batch.find(mark)
    while at >= 0:
        found.append(at)
        at = batch.find(mark, at + len(mark))
    return found


class _Block(msgspec.Struct):
    type: str = ""
    text: str = ""
    thinking: str = ""


class _BlockStart(msgspec.Struct):
    content_block: _Block | None = None


class _WithUsage(msgspec.Struct):
    usage: IOUsageFields | None = None


class _AnthropicUsage(msgspec.Struct):
    message: _WithUsage | None = None  # message_start
    usage: IOUsageFields | None = None  # message_delta


_block_start = msgspec.json.Decoder(_BlockStart)
_anthropic_usage = msgspec.json.Decoder(_AnthropicUsage)
_ANTHROPIC_BEFORE = frozenset({"message_start", "ping", "content_block_stop"})


def _opens_with_content(data: str) -> bool:
    """A ``content_block_start`` that carries part of the answer: a tool call (its id and
    name), or a text or thinking block that starts with text."""
    try:
        block = _block_start.decode(data).content_block
    except msgspec.DecodeError:
        return True
    if block is None:
        return False
    return block.type not in ("text", "thinking") or bool(block.text or block.thinking)


class _AnthropicFilter(_EventFilter):
    __slots__ = ()
    _MARKS = (b"error", b"message_stop", b'"usage"')

    def _note(self, event: ServerSentEvent, name: str) -> bool:
        if name == "error":
            return self._fail(error_message_of(event.data))
        if name == "message_stop":
            self.outcome.done = True
        elif name in ("message_start", "message_delta") and event.data.find('"usage"') >= 0:
            try:
                found = _anthropic_usage.decode(event.data)
            except msgspec.DecodeError:
                return False
            inner = found.message.usage if found.message is not None else None
            self._add_usage(found.usage or inner)
        return False


class _AnthropicRules(StreamRules):
    end = "message_stop"
    Filter = _AnthropicFilter

    def verdict(self, event: ServerSentEvent) -> Verdict:
        name = event_name(event)
        if name == "error":
            return "failed"
        if name in _ANTHROPIC_BEFORE:
            return "waiting"
        if name == "content_block_start" and not _opens_with_content(event.data):
            return "waiting"
        return "committed"

    def error_event(self, err: GatewayError) -> bytes:
        return (
            b"event: error\ndata: " + openai_error_to_anthropic(err.status, err.body())[1] + b"\n\n"
        )


# ------------------------------------------------------------------------- Responses API


class _ErrorDetail(msgspec.Struct):
    message: str | None = None


class _Response(msgspec.Struct):
    usage: IOUsageFields | None = None
    error: _ErrorDetail | None = None


class _ResponsesEvent(msgspec.Struct):
    message: str | None = None  # an error event's
    response: _Response | None = None
    error: Any = None


_responses_event = msgspec.json.Decoder(_ResponsesEvent)
_RESPONSES_BEFORE = frozenset({"response.created", "response.in_progress", "response.queued"})
_RESPONSES_FAILED = frozenset({"error", "response.failed"})
_RESPONSES_END = frozenset({"response.completed", "response.incomplete"})


def _responses_event_of(data: str) -> _ResponsesEvent | None:
    try:
        return _responses_event.decode(data)
    except msgspec.DecodeError:
        return None


class _ResponsesFilter(_EventFilter):
    __slots__ = ()
    _MARKS = (b"error", b"response.failed", b"response.completed", b"response.incomplete")

    def _note(self, event: ServerSentEvent, name: str) -> bool:
        if name in _RESPONSES_FAILED:
            return self._fail(RESPONSES_RULES.error_message(event))
        if name in _RESPONSES_END:
            self.outcome.done = True
            found = _responses_event_of(event.data)
            if found is not None and found.response is not None:
                self._add_usage(found.response.usage)
        return False


class _ResponsesRules(StreamRules):
    end = "response.completed"
    Filter = _ResponsesFilter

    def verdict(self, event: ServerSentEvent) -> Verdict:
        name = event_name(event)
        if name in _RESPONSES_FAILED:
            return "failed"
        return "waiting" if name in _RESPONSES_BEFORE else "committed"

    def error_message(self, event: ServerSentEvent) -> str:
        """``error``'s ``message``, or the failed response's ``error.message``."""
        found = _responses_event_of(event.data)
        if found is None:
            return "error event"
        if found.message:
            return found.message
        failed = found.response.error if found.response is not None else None
        if failed is not None and failed.message:
            return failed.message
        return error_message_of(event.data)

    def error_event(self, err: GatewayError) -> bytes:
        """The Responses API's ``error`` event (``type``, ``code``, ``message``, ``param``),
        which also holds the error object OpenAI's SDKs raise on in any stream."""
        inner = msgspec.json.decode(err.body())["error"]
        data = {"type": "error", "code": err.code, "message": err.message, "param": err.param}
        data["error"] = inner
        return b"event: error\ndata: " + _encode(data) + b"\n\n"


CHAT_RULES: StreamRules = _ChatRules()
ANTHROPIC_RULES: StreamRules = _AnthropicRules()
RESPONSES_RULES: StreamRules = _ResponsesRules()
# The rules of a call's stream, by its route.
STREAM_RULES: dict[str, StreamRules] = {
    **dict.fromkeys(MODEL_ROUTES, CHAT_RULES),
    RESPONSES: RESPONSES_RULES,
    MESSAGES: ANTHROPIC_RULES,
}
