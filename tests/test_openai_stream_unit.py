"""ChatStream logic over fake responses (the body is a list of byte pieces), sync and async,
at many chunkings of the same bytes."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest

from aifetch._errors import IncompleteStreamError, StreamError
from aifetch.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatStream,
    InvalidChunkError,
    ToolCallArgumentsError,
    _stream,
    decode_chunk,
)
from tests.support.openai_fixtures import CASES, CASES_BY_NAME, Case, sse_body

# --- fake responses ---------------------------------------------------------------------------


class FakeSyncResponse:
    """A sync response whose body yields the given pieces and records what was read."""

    def __init__(self, pieces: list[bytes], fail_with: Exception | None = None) -> None:
        self.pieces = pieces
        self.read = 0  # pieces handed out
        self.closed = 0  # close() calls
        self.fail_with = fail_with
        self.body = self._body()

    def _body(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.read += 1
            yield piece
        if self.fail_with is not None:
            raise self.fail_with

    def close(self) -> None:
        self.closed += 1


class FakeAsyncResponse:
    """The async twin of FakeSyncResponse."""

    def __init__(self, pieces: list[bytes], fail_with: Exception | None = None) -> None:
        self.pieces = pieces
        self.read = 0
        self.closed = 0
        self.fail_with = fail_with
        self.body = self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.read += 1
            yield piece
        if self.fail_with is not None:
            raise self.fail_with

    async def aclose(self) -> None:
        self.closed += 1


# --- chunkings ---------------------------------------------------------------------------------


def whole(data: bytes) -> list[bytes]:
    return [data]


def every_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_split(seed: int) -> Callable[[bytes], list[bytes]]:
    def split(data: bytes) -> list[bytes]:
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, len(data) // 7)))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    split.__name__ = f"random_{seed}"
    return split


CHUNKINGS = [whole, every_byte, random_split(1), random_split(2), random_split(3)]


def expected_chunks(case: Case) -> list[ChatCompletionChunk]:
    return [decode_chunk(json.dumps(c)) for c in case.chunks]


def expected_final(case: Case) -> ChatCompletion:
    return msgspec.convert(case.expected, ChatCompletion)


# --- every fixture, every chunking, both kinds -------------------------------------------------


@pytest.mark.parametrize("split", CHUNKINGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sync_stream_yields_chunks_and_final(case: Case, split: Callable[..., Any]) -> None:
    resp = FakeSyncResponse(split(sse_body(case.chunks)))
    stream = ChatStream(resp)
    assert list(stream) == expected_chunks(case)
    assert stream.final() == expected_final(case)
    assert resp.read == len(resp.pieces)
    assert resp.closed == 1


@pytest.mark.parametrize("split", CHUNKINGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_async_stream_yields_chunks_and_final(case: Case, split: Callable[..., Any]) -> None:
    resp = FakeAsyncResponse(split(sse_body(case.chunks)))
    stream = ChatStream(resp)
    assert [chunk async for chunk in stream] == expected_chunks(case)
    assert stream.final() == expected_final(case)
    assert resp.read == len(resp.pieces)
    assert resp.closed == 1


# --- [DONE] and what follows it -------------------------------------------------------------------

CONTENT = CASES_BY_NAME["openai_content"]


def test_events_after_done_are_not_decoded_and_the_rest_is_drained() -> None:
    # Garbage after [DONE] would fail to decode if it were read as a chunk.
    body = sse_body(CONTENT.chunks, trailing=b'data: {"not a chunk\n\ndata: x\n\n')
    pieces = every_byte(body)
    resp = FakeSyncResponse(pieces)
    stream = ChatStream(resp)
    assert len(list(stream)) == len(CONTENT.chunks)
    assert resp.read == len(pieces)  # everything was read: the connection is reusable
    assert resp.closed == 1


async def test_trailing_bytes_past_the_limit_stop_the_drain() -> None:
    trailing = [b"x" * 100] * 50
    resp = FakeAsyncResponse([sse_body(CONTENT.chunks), *trailing])
    stream = ChatStream(resp, max_trailing_bytes=250)
    assert await stream.afinal() == expected_final(CONTENT)
    # 100, 200, 300 > 250: three trailing reads, then the response is closed unread.
    assert resp.read == 1 + 3
    assert resp.closed == 1


def test_done_in_the_same_read_as_trailing_data() -> None:
    resp = FakeSyncResponse([sse_body(CONTENT.chunks, trailing=b"data: {}\n\n")])
    assert ChatStream(resp).final() == expected_final(CONTENT)


# --- errors -------------------------------------------------------------------------------------

ERROR_PAYLOAD = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "code": "internal_error",
        "param": None,
    }
}


def _error_body() -> bytes:
    return sse_body(CONTENT.chunks[:2], done=False) + sse_body([ERROR_PAYLOAD], done=False)


@pytest.mark.parametrize("split", CHUNKINGS, ids=lambda f: f.__name__)
def test_error_payload_mid_stream_raises_stream_error(split: Callable[..., Any]) -> None:
    resp = FakeSyncResponse(split(_error_body() + b"data: [DONE]\n\n"))
    stream = ChatStream(resp)
    chunks = iter(stream)
    # The chunks before the error are delivered, then the error.
    assert list(itertools.islice(chunks, 2)) == expected_chunks(CONTENT)[:2]
    with pytest.raises(StreamError) as info:
        next(chunks)
    err = info.value
    assert (err.message, err.type, err.code, err.param) == (
        "The server had an error while processing your request.",
        "server_error",
        "internal_error",
        None,
    )
    assert err.body == ERROR_PAYLOAD
    assert resp.closed == 1
    with pytest.raises(StreamError):  # never a partial answer
        stream.final()


async def test_error_payload_async() -> None:
    resp = FakeAsyncResponse(random_split(5)(_error_body()))
    stream = ChatStream(resp)
    with pytest.raises(StreamError, match="server_error"):
        await stream.afinal()
    assert resp.closed == 1
    with pytest.raises(StreamError):
        stream.final()


def test_error_event_raises_stream_error() -> None:
    body = (
        sse_body(CONTENT.chunks[:1], done=False)
        + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    stream = ChatStream(FakeSyncResponse([body]))
    with pytest.raises(StreamError) as info:
        stream.final()
    assert (info.value.message, info.value.type) == ("Overloaded", "overloaded_error")


def test_error_event_with_plain_text_data() -> None:
    stream = ChatStream(FakeSyncResponse([b"event: error\ndata: upstream went away\n\n"]))
    with pytest.raises(StreamError) as info:
        list(stream)
    assert info.value.message == "upstream went away"


@pytest.mark.parametrize("split", CHUNKINGS, ids=lambda f: f.__name__)
def test_missing_done_raises_incomplete_stream_error(split: Callable[..., Any]) -> None:
    resp = FakeSyncResponse(split(sse_body(CONTENT.chunks, done=False)))
    stream = ChatStream(resp)
    chunks = iter(stream)
    assert list(itertools.islice(chunks, 5)) == expected_chunks(CONTENT)
    with pytest.raises(IncompleteStreamError, match=r"after 5 chunks without \[DONE\]"):
        next(chunks)
    assert resp.closed == 1
    with pytest.raises(IncompleteStreamError):
        stream.final()


async def test_done_without_its_blank_line_is_incomplete() -> None:
    # HTML §9.2.5: an event not ended by an empty line is discarded at end of stream.
    body = sse_body(CONTENT.chunks, done=False) + b"data: [DONE]"
    stream = ChatStream(FakeAsyncResponse([body]))
    with pytest.raises(IncompleteStreamError):
        await stream.afinal()


def test_invalid_json_raises_invalid_chunk_error() -> None:
    body = sse_body(CONTENT.chunks[:1], done=False) + b'data: {"choices": [\n\ndata: [DONE]\n\n'
    resp = FakeSyncResponse([body])
    with pytest.raises(InvalidChunkError, match=r"event 2 .*'\{\"choices\": \['") as info:
        list(ChatStream(resp))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
    assert resp.closed == 1


@pytest.mark.parametrize(
    "payload",
    [b'{"choices": "none"}', b'{"error": ' + b"[" * 100_000, b'"error"'],
    ids=["wrong_shape", "deep_nesting", "json_string"],
)
def test_payloads_that_are_not_chunks(payload: bytes) -> None:
    resp = FakeSyncResponse([b"data: " + payload + b"\n\ndata: [DONE]\n\n"])
    with pytest.raises(InvalidChunkError, match="event 1 "):
        ChatStream(resp).final()
    assert resp.closed == 1


def test_a_delta_that_reads_error_is_content() -> None:
    body = sse_body([{"choices": [{"index": 0, "delta": {"content": "error"}}]}])
    assert list(ChatStream(FakeSyncResponse([body])).text_deltas()) == ["error"]


def test_body_failure_is_raised_again_by_final() -> None:
    boom = ConnectionResetError("reset by peer")
    resp = FakeSyncResponse([sse_body(CONTENT.chunks[:2], done=False)], fail_with=boom)
    stream = ChatStream(resp)
    with pytest.raises(ConnectionResetError):
        list(stream)
    with pytest.raises(ConnectionResetError):
        stream.final()
    assert resp.closed == 1


# --- what never reaches the JSON decoder ---------------------------------------------------------


@pytest.mark.parametrize("split", CHUNKINGS, ids=lambda f: f.__name__)
def test_comments_keepalives_and_other_events_are_ignored(
    split: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str | bytes] = []

    def counting_decode(data: bytes | str) -> ChatCompletionChunk:
        decoded.append(data)
        return decode_chunk(data)

    monkeypatch.setattr(_stream, "decode_chunk", counting_decode)
    noise = b': ping\n\n:\n\ndata:\n\nevent: ping\ndata: {"type": "ping"}\n\n: keep-alive\n'
    body = (
        noise
        + noise.join(sse_body([c])[: -len(b"data: [DONE]\n\n")] for c in CONTENT.chunks)
        + noise
        + b"data: [DONE]\n\n"
    )
    stream = ChatStream(FakeSyncResponse(split(body)))
    assert list(stream) == expected_chunks(CONTENT)
    assert stream.final() == expected_final(CONTENT)
    assert len(decoded) == len(CONTENT.chunks)


# --- helpers: text_deltas, tool_calls, final ------------------------------------------------------


def test_text_deltas_sync() -> None:
    stream = ChatStream(FakeSyncResponse([sse_body(CONTENT.chunks)]))
    assert list(stream.text_deltas()) == ["Hello", "!", " How can I help you today?"]
    assert stream.final() == expected_final(CONTENT)


async def test_text_deltas_async_follows_choice_zero_only() -> None:
    case = CASES_BY_NAME["n2_interleaved"]
    stream = ChatStream(FakeAsyncResponse(every_byte(sse_body(case.chunks))))
    assert [t async for t in stream.text_deltas()] == ["Tails", "."]
    assert stream.final() == expected_final(case)


def test_tool_calls_reads_the_rest_and_parses() -> None:
    case = CASES_BY_NAME["parallel_tool_calls"]
    stream = ChatStream(FakeSyncResponse([sse_body(case.chunks)]))
    calls = stream.tool_calls()
    assert [(c.id, args) for c, args in calls] == [
        ("call_Wd2uM1", {"city": "Paris"}),
        ("call_Kq8vB3", {"tz": "Europe/Paris"}),
    ]


async def test_tool_calls_with_bad_arguments() -> None:
    case = CASES_BY_NAME["parallel_tool_calls"]
    chunks = case.chunks[:3] + case.chunks[-1:]  # the first call's arguments cut short
    stream = ChatStream(FakeAsyncResponse([sse_body(chunks)]))
    await stream.afinal()
    with pytest.raises(ToolCallArgumentsError, match="'get_weather'"):
        stream.tool_calls()


async def test_async_final_before_the_end_asks_for_afinal() -> None:
    resp = FakeAsyncResponse([sse_body(CONTENT.chunks)])
    stream = ChatStream(resp)
    with pytest.raises(RuntimeError, match=r"await stream\.afinal\(\)"):
        stream.final()
    assert await stream.afinal() == expected_final(CONTENT)
    assert stream.final() == expected_final(CONTENT)


def test_iteration_resumes_after_break() -> None:
    stream = ChatStream(FakeSyncResponse(every_byte(sse_body(CONTENT.chunks))))
    first = []
    for chunk in stream:
        first.append(chunk)
        break
    rest = list(stream)
    assert first + rest == expected_chunks(CONTENT)


def test_wrong_loop_kind_is_a_type_error() -> None:
    sync_stream = ChatStream(FakeSyncResponse([]))
    with pytest.raises(TypeError, match="'for'"):
        sync_stream.__aiter__()
    async_stream = ChatStream(FakeAsyncResponse([]))
    with pytest.raises(TypeError, match="'async for'"):
        iter(async_stream)
    assert async_stream.is_async
    assert not sync_stream.is_async


async def test_afinal_on_a_sync_stream_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"stream\.final\(\)"):
        await ChatStream(FakeSyncResponse([])).afinal()


# --- closing -------------------------------------------------------------------------------------


def test_context_manager_closes_an_unread_sync_stream() -> None:
    resp = FakeSyncResponse([sse_body(CONTENT.chunks)])
    with ChatStream(resp) as stream:
        pass
    assert resp.closed == 1
    assert resp.read == 0
    with pytest.raises(IncompleteStreamError, match="closed after 0 chunks"):
        stream.final()


def test_close_mid_stream_closes_once() -> None:
    resp = FakeSyncResponse(every_byte(sse_body(CONTENT.chunks)))
    stream = ChatStream(resp)
    next(iter(stream))
    stream.close()
    assert resp.closed == 1
    assert resp.read < len(resp.pieces)


async def test_async_context_manager_closes_mid_stream() -> None:
    resp = FakeAsyncResponse(every_byte(sse_body(CONTENT.chunks)))
    async with ChatStream(resp) as stream:
        async for _ in stream:
            break
    assert resp.closed == 1
    with pytest.raises(IncompleteStreamError):
        stream.final()


async def test_async_context_manager_closes_an_unread_stream() -> None:
    resp = FakeAsyncResponse([sse_body(CONTENT.chunks)])
    async with ChatStream(resp):
        pass
    assert (resp.closed, resp.read) == (1, 0)
