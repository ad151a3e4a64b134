"""Property tests: the decoder against a literal reading of HTML §9.2.5-§9.2.6, chunking
invariance, the splitter's byte-exactness, and encode/decode round trips."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aifetch.sse import (
    ServerSentEvent,
    SSEBlockSplitter,
    SSEDecoder,
    encode_comment,
    encode_event,
    parse_block,
)

BOUNDED = settings(max_examples=250, deadline=None)


def reference_decode(stream: bytes) -> tuple[list[ServerSentEvent], str, int | None]:
    """The spec's algorithm, step by step, on text decoded from the whole stream at once."""
    # §9.2.5: UTF-8 decode (replacement for errors), which drops one leading BOM.
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    # Lines end at CRLF, CR or LF; what follows the last line ending is never processed.
    lines = re.split(r"\r\n|\r|\n", text)[:-1]
    events: list[ServerSentEvent] = []
    data_buffer, event_type, id_buffer = "", "", ""
    last_event_id, reconnection_time = "", None
    block_retry: int | None = None
    for line in lines:
        if line == "":
            # Dispatch the event (§9.2.6).
            last_event_id = id_buffer
            if data_buffer == "":
                data_buffer, event_type, block_retry = "", "", None
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            events.append(
                ServerSentEvent(event_type or "message", data_buffer, last_event_id, block_retry)
            )
            data_buffer, event_type, block_retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            reconnection_time = block_retry = int(value)
    return events, last_event_id, reconnection_time


# Streams built from the pieces that matter to a parser, plus arbitrary bytes.
TOKENS = [
    b"data", b"data:", b"data: ", b"event:", b"event: e", b"id:", b"id: 1", b"id: 2\x00",
    b"retry:", b"retry: 15", b"retry: 1x", b":", b": c", b" ", b"x", b"\n", b"\n", b"\r",
    b"\r\n", b"\xef\xbb\xbf", b"\xef\xbb", b"\xe2\x82", b"\xac", b"\xff", b"\xc3\xa9",
    b"\xe2\x80\xa8", b"\x00", b"{\"a\":1}",
]  # fmt: skip
streams = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=4)), max_size=40).map(
    b"".join
)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = draw(streams)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds)]


def run_decoder(chunks: list[bytes]) -> tuple[list[ServerSentEvent], str, int | None, list[str]]:
    comments: list[str] = []
    decoder = SSEDecoder(on_comment=comments.append)
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    outcome = (events, decoder.last_event_id, decoder.retry, comments)
    assert decoder.close() == []
    return outcome


@BOUNDED
@given(streams)
def test_decoder_matches_reference_algorithm(stream: bytes) -> None:
    events, last_event_id, retry, _ = run_decoder([stream])
    assert (events, last_event_id, retry) == reference_decode(stream)


@BOUNDED
@given(chunked())
def test_any_chunking_gives_the_same_result(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    assert run_decoder(chunks) == run_decoder([stream])


@BOUNDED
@given(chunked())
def test_splitter_is_byte_exact_and_agrees_with_decoder(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    splitter = SSEBlockSplitter()
    blocks = [block for chunk in chunks for block in splitter.feed(chunk)]
    rest = splitter.close()
    assert b"".join(blocks) + rest == stream
    parsed = [parse_block(block, stream_start=i == 0) for i, block in enumerate(blocks)]
    from_blocks = [event for event in parsed if event is not None]
    expected = run_decoder([stream])[0]
    # A block only knows its own id; the decoder's id may come from an earlier block.
    assert [(e.event, e.data, e.retry) for e in from_blocks] == [
        (e.event, e.data, e.retry) for e in expected
    ]
    for got, want in zip(from_blocks, expected, strict=True):
        assert got.id in ("", want.id)


@BOUNDED
@given(chunked(), st.lists(st.booleans(), max_size=12))
def test_splitter_joined_feed_gives_the_same_bytes_at_the_same_time(
    case: tuple[bytes, list[bytes]], joined: list[bool]
) -> None:
    # feed_joined (one search per read) against feed (one per block), mixed in one stream:
    # each read must release exactly the bytes of the blocks it completes.
    _stream, chunks = case
    by_block, mixed = SSEBlockSplitter(), SSEBlockSplitter()
    for i, chunk in enumerate(chunks):
        expected = b"".join(by_block.feed(chunk))
        use_joined = joined[i] if i < len(joined) else True
        got = mixed.feed_joined(chunk) if use_joined else b"".join(mixed.feed(chunk))
        assert got == expected, (i, chunk)
    assert mixed.close() == by_block.close()


no_line_breaks = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"), max_size=12
)


@st.composite
def event_args(draw: st.DrawFn) -> dict[str, object]:
    return {
        "data": draw(st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)),
        "event": draw(st.none() | no_line_breaks.filter(bool)),
        "id": draw(st.none() | no_line_breaks),
        "retry": draw(st.none() | st.integers(0, 2**40)),
    }


@BOUNDED
@given(st.lists(event_args(), max_size=6), st.lists(st.integers(0, 10_000), max_size=8))
def test_encode_then_decode_round_trips(events: list[dict[str, object]], cuts: list[int]) -> None:
    stream = b"".join(
        encode_event(**args) + encode_comment("keep-alive")  # type: ignore[arg-type]
        for args in events
    )
    bounds = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    decoded, last_event_id, _, _ = run_decoder([stream[a:b] for a, b in itertools.pairwise(bounds)])
    expected, in_force = [], ""
    for args in events:
        in_force = args["id"] if args["id"] is not None else in_force  # type: ignore[assignment]
        data = str(args["data"]).replace("\r\n", "\n").replace("\r", "\n")
        expected.append(ServerSentEvent(args["event"] or "message", data, in_force, args["retry"]))  # type: ignore[arg-type]
    assert decoded == expected
    assert last_event_id == in_force


@BOUNDED
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"), max_size=40))
def test_data_without_cr_round_trips_exactly(data: str) -> None:
    assert run_decoder([encode_event(data)])[0] == [ServerSentEvent(data=data)]
