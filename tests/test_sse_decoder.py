"""SSEDecoder and SSEBlockSplitter against WHATWG HTML §9.2.5-§9.2.6, at many chunkings.

Every stream case goes through ``decode_every_way``: fed whole, one byte at a time, cut in
two at every offset, and at seeded random cuts (with empty feeds mixed in).  All of those
must give the same events, the same ``last_event_id``/``retry`` and the same comments, and
the block splitter must give back the exact input bytes for each of them.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from aifetch.sse import (
    EventTooLargeError,
    ServerSentEvent,
    SSEBlockSplitter,
    SSEDecoder,
    SSEError,
    block_is_comment_only,
    parse_block,
)

E = ServerSentEvent


def chunkings(stream: bytes, seeds: int = 25) -> Iterator[list[bytes]]:
    """Ways to cut ``stream`` into reads: whole, per byte, at every cut, at random cuts."""
    yield [stream]
    yield [stream[i : i + 1] for i in range(len(stream))]
    for cut in range(len(stream) + 1):
        yield [stream[:cut], stream[cut:]]
    for seed in range(seeds):
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(1, 8))))
        bounds = [0, *cuts, len(stream)]
        pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
        yield [piece for part in pieces for piece in (part, b"")]  # empty reads too


@dataclass
class Outcome:
    events: list[ServerSentEvent]
    last_event_id: str
    retry: int | None
    comments: list[str] = field(default_factory=list)


def decode_once(chunks: list[bytes]) -> Outcome:
    comments: list[str] = []
    decoder = SSEDecoder(on_comment=comments.append)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    last_event_id, retry = decoder.last_event_id, decoder.retry
    events += decoder.close()
    assert (decoder.last_event_id, decoder.retry) == (last_event_id, retry)
    return Outcome(events, last_event_id, retry, comments)


def split_once(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = SSEBlockSplitter()
    blocks: list[bytes] = []
    for chunk in chunks:
        blocks += splitter.feed(chunk)
    return blocks, splitter.close()


def decode_every_way(stream: bytes) -> Outcome:
    """Decode ``stream`` at every chunking; assert they agree; return the common outcome."""
    whole = decode_once([stream])
    whole_blocks = split_once([stream])
    for chunks in chunkings(stream):
        assert decode_once(chunks) == whole, chunks
        blocks, rest = split_once(chunks)
        assert b"".join(blocks) + rest == stream, chunks
        if b"\r" not in stream:
            # Without CR no chunking can separate a CRLF, so the blocks are the same too.
            assert (blocks, rest) == whole_blocks, chunks
    return whole


def datas(stream: bytes) -> list[str]:
    return [event.data for event in decode_every_way(stream).events]


# ---- dispatch and the data buffer (§9.2.6) -------------------------------------------


def test_single_data_event() -> None:
    assert decode_every_way(b"data: hello\n\n").events == [E("message", "hello", "", None)]


def test_openai_shaped_stream() -> None:
    stream = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'
    assert datas(stream) == ['{"a":1}', '{"b":2}', "[DONE]"]


def test_data_lines_join_with_lf() -> None:
    assert datas(b"data: a\ndata: b\ndata: c\n\n") == ["a\nb\nc"]


def test_only_one_trailing_lf_is_stripped() -> None:
    assert datas(b"data: a\ndata:\n\n") == ["a\n"]
    assert datas(b"data:\ndata:\n\n") == ["\n"]


def test_empty_data_field_dispatches_empty_string() -> None:
    assert datas(b"data:\n\n") == [""]
    assert datas(b"data: \n\n") == [""]


def test_line_without_colon_is_field_name_with_empty_value() -> None:
    assert datas(b"data\n\n") == [""]
    assert datas(b"data\ndata\n\n") == ["\n"]


def test_only_one_leading_space_is_removed() -> None:
    assert datas(b"data:x\n\ndata: x\n\ndata:  x\n\ndata:\tx\n\n") == ["x", "x", " x", "\tx"]


def test_value_keeps_later_colons() -> None:
    assert datas(b"data: a: b:c\n\n") == ["a: b:c"]


def test_field_names_are_case_sensitive_and_unknown_ones_ignored() -> None:
    stream = b"Data: no\nfoo: bar\n data: no\ndata : no\ndata: yes\n\n"
    assert datas(stream) == ["yes"]


def test_block_without_data_dispatches_nothing() -> None:
    assert datas(b"event: x\n\nretry: 5\n\n: c\n\nfoo\n\n\n\n") == []


def test_blank_lines_between_events_are_harmless() -> None:
    assert datas(b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n\n") == ["a", "b"]


def test_unterminated_final_block_is_not_dispatched() -> None:
    assert datas(b"data: a\n\ndata: b\n") == ["a"]
    assert datas(b"data: a\n\ndata: b") == ["a"]
    assert datas(b"data: a\n\ndata: b\r") == ["a"]


def test_close_discards_partial_block_and_allows_a_new_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 7\ndata: a\n\ndata: partial") == [E("message", "a", "7", None)]
    assert decoder.close() == []
    # A new stream: the partial block is gone, a BOM is allowed again, the id carries over.
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [E("message", "b", "7", None)]
    assert decoder.last_event_id == "7"


# ---- event type (§9.2.6) --------------------------------------------------------------


def test_event_type_applies_to_one_event_then_resets() -> None:
    events = decode_every_way(b"event: add\ndata: x\n\ndata: y\n\n").events
    assert [(e.event, e.data) for e in events] == [("add", "x"), ("message", "y")]


def test_empty_event_type_means_message() -> None:
    assert decode_every_way(b"event:\ndata: x\n\n").events[0].event == "message"
    assert decode_every_way(b"event\ndata: x\n\n").events[0].event == "message"


def test_event_type_of_a_dataless_block_does_not_leak() -> None:
    assert decode_every_way(b"event: a\n\ndata: x\n\n").events[0].event == "message"


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        # The shape of Anthropic's events (the decoder's second fast path), and the blocks
        # that start like it and turn out otherwise.
        (b"event: ping\ndata: {}\n\n", [("ping", "{}", "")]),
        (b"event: \ndata: x\n\n", [("message", "x", "")]),
        (b"event: a\nevent: b\ndata: x\n\n", [("b", "x", "")]),
        (b"event: a\nid: 7\ndata: x\n\n", [("a", "x", "7")]),
        (b"event: a\ndata: x\ndata: y\n\n", [("a", "x\ny", "")]),
        (b"event: a\ndata: x\nevent: b\n\n", [("b", "x", "")]),
        (b"event: a\n: note\ndata: x\n\n", [("a", "x", "")]),
        (b"event: a\n\nevent: b\ndata: x\n\ndata: y\n\n", [("b", "x", ""), ("message", "y", "")]),
        (b"event: a\r\ndata: x\r\n\r\nevent: b\rdata: y\r\r", [("a", "x", ""), ("b", "y", "")]),
    ],
)
def test_event_and_data_blocks(stream: bytes, expected: list[tuple[str, str, str]]) -> None:
    events = decode_every_way(stream).events
    assert [(e.event, e.data, e.id) for e in events] == expected


def test_last_event_type_line_wins() -> None:
    assert decode_every_way(b"event: a\nevent: b\ndata: x\n\n").events[0].event == "b"


# ---- id and last_event_id (§9.2.6) ------------------------------------------------------


def test_id_stays_in_force_for_later_events() -> None:
    events = decode_every_way(b"id: 1\ndata: a\n\ndata: b\n\n").events
    assert [e.id for e in events] == ["1", "1"]


def test_empty_id_resets_last_event_id() -> None:
    for reset in (b"id\n", b"id:\n", b"id: \n"):
        outcome = decode_every_way(b"id: 1\ndata: a\n\n" + reset + b"data: b\n\n")
        assert [e.id for e in outcome.events] == ["1", ""]
        assert outcome.last_event_id == ""


def test_id_with_nul_is_ignored() -> None:
    outcome = decode_every_way(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in outcome.events] == ["1", "1"]
    assert outcome.last_event_id == "1"


def test_id_only_block_updates_last_event_id_without_dispatch() -> None:
    outcome = decode_every_way(b"id: 1\ndata: a\n\nid: 42\n\n")
    assert [e.id for e in outcome.events] == ["1"]
    assert outcome.last_event_id == "42"


def test_id_in_unterminated_block_does_not_change_last_event_id() -> None:
    # The event source's last event ID string is only set when a block ends (§9.2.6 step 1).
    assert decode_every_way(b"id: 1\n\nid: 2\n").last_event_id == "1"


def test_id_line_after_data_still_belongs_to_the_event() -> None:
    assert decode_every_way(b"data: a\nid: 9\n\n").events == [E("message", "a", "9", None)]


# ---- retry (§9.2.6) -----------------------------------------------------------------------


def test_retry_sets_reconnection_time_and_marks_its_event() -> None:
    outcome = decode_every_way(b"retry: 1500\ndata: a\n\ndata: b\n\n")
    assert [e.retry for e in outcome.events] == [1500, None]
    assert outcome.retry == 1500


@pytest.mark.parametrize(
    "value",
    [b"10a", b"-5", b"+5", b" 5", b"5 ", b"1.5", b"", b"\xd9\xa1\xd9\xa2", b"\xef\xbc\x95"],
)
def test_retry_that_is_not_all_ascii_digits_is_ignored(value: bytes) -> None:
    outcome = decode_every_way(b"retry: 7\n\nretry: " + value + b"\ndata: a\n\n")
    assert outcome.retry == 7
    assert outcome.events[0].retry is None


def test_retry_with_leading_zeros_and_zero() -> None:
    assert decode_every_way(b"retry: 0010\n\n").retry == 10
    assert decode_every_way(b"retry: 0\n\n").retry == 0


def test_retry_beyond_int_parsing_limit_is_ignored_not_raised() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n")
    assert decoder.retry is None
    decoder.feed(b"retry: " + b"0" * 5000 + b"12\n\n")
    assert decoder.retry == 12


def test_retry_line_is_applied_when_complete_even_in_unterminated_block() -> None:
    assert decode_every_way(b"retry: 300\n").retry == 300
    assert decode_every_way(b"retry: 300").retry is None


# ---- comments --------------------------------------------------------------------------


def test_comments_go_to_callback_without_colon_and_one_space() -> None:
    outcome = decode_every_way(b": ping\n:pong\n:  two\n:\ndata: x\n: mid\n\n")
    assert outcome.comments == ["ping", "pong", " two", "", "mid"]
    assert [e.data for e in outcome.events] == ["x"]


def test_comment_only_stream_dispatches_nothing() -> None:
    outcome = decode_every_way(b": ping\n\n: ping\n\n")
    assert outcome.events == []
    assert outcome.comments == ["ping", "ping"]


def test_comments_are_ignored_without_callback() -> None:
    assert SSEDecoder().feed(b": hi\ndata: x\n\n") == [E("message", "x", "", None)]


# ---- line endings (§9.2.5) -------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_gives_the_same_events(eol: bytes) -> None:
    stream = eol.join([b"event: e", b"id: 3", b"retry: 9", b"data: a", b"data: b", b"", b""])
    assert decode_every_way(stream).events == [E("e", "a\nb", "3", 9)]


def test_mixed_line_endings() -> None:
    assert datas(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r") == ["a\nb\nc", "d"]


def test_lone_cr_event_is_dispatched_without_waiting_for_more_bytes() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [E("message", "a", "", None)]


def test_crlf_split_across_feeds_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # Were the LF an empty line, "a" would be dispatched alone here.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == [E("message", "a\nb", "", None)]


def test_cr_cr_lf_is_two_line_endings() -> None:
    assert datas(b"data: a\r\r\ndata: b\n\n") == ["a", "b"]


def test_unicode_line_separators_are_not_line_endings() -> None:
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"
    assert datas(b"data: " + text.encode() + b"\n\n") == [text]


# ---- UTF-8 and the BOM (§9.2.5) ------------------------------------------------------------


def test_multibyte_characters_split_across_reads_stay_whole() -> None:
    text = "h\u00e9llo \u20ac \U0001f600 \u4e2d"
    # Every-byte chunking in decode_every_way cuts each character in every place.
    assert datas(f"event: \u00e9\nid: \u20ac\ndata: {text}\n\n".encode()) == [text]
    event = decode_every_way("event: \u00e9\nid: \u20ac\ndata: x\n\n".encode()).events[0]
    assert (event.event, event.id) == ("\u00e9", "\u20ac")


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert datas(b"data: a\xffb\n\n") == ["a\ufffdb"]
    assert datas(b"data: \xe2\x82\n\n") == ["\ufffd"]
    assert datas(b"data: \xe2\x82\ndata: \xac\n\n") == ["\ufffd\n\ufffd"]
    event = decode_every_way(b"event: \xc3\nid: \xfe\ndata: x\n\n").events[0]
    assert (event.event, event.id) == ("\ufffd", "\ufffd")


def test_leading_bom_is_stripped() -> None:
    assert datas(b"\xef\xbb\xbfdata: x\n\n") == ["x"]


def test_bom_then_empty_line() -> None:
    assert datas(b"\xef\xbb\xbf\ndata: x\n\n") == ["x"]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM is part of the first line's field name, which is then unknown.
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n") == ["y"]


def test_bom_not_at_stream_start_is_kept() -> None:
    assert datas(b"data: \xef\xbb\xbfx\n\n") == ["\ufeffx"]
    assert datas(b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\n\n") == ["a", "c"]


def test_partial_bom_is_invalid_utf8() -> None:
    assert datas(b"\xef\xbbdata: x\n\ndata: y\n\n") == ["y"]
    assert datas(b"\xef\xbb\ndata: y\n\n") == ["y"]
    assert datas(b"\xef") == []


def test_bom_arriving_one_byte_at_a_time() -> None:
    decoder = SSEDecoder()
    assert [decoder.feed(bytes([b])) for b in b"\xef\xbb\xbf"] == [[], [], []]
    assert decoder.feed(b"data: x\n\n") == [E("message", "x", "", None)]


# ---- bounds and linear time -------------------------------------------------------------


def test_huge_line_without_newline_raises_naming_the_limit() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    for _ in range(9):
        assert decoder.feed(b"data: " + b"x" * 100) == []
    with pytest.raises(EventTooLargeError, match="max_event_size=1000"):
        decoder.feed(b"data: " + b"x" * 100)


def test_huge_line_in_one_read_raises() -> None:
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=1000).feed(b"data: " + b"x" * 2000 + b"\n\n")


def test_huge_unterminated_line_after_complete_lines_raises() -> None:
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=1000).feed(b"data: a\n\n" + b"x" * 2000)


def test_huge_multiline_data_block_raises() -> None:
    line = b"data: " + b"x" * 300 + b"\n"
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=1000).feed(line * 5)
    decoder = SSEDecoder(max_event_size=1000)
    for _ in range(3):
        assert decoder.feed(line) == []
    with pytest.raises(EventTooLargeError):
        decoder.feed(line)


def test_event_too_large_is_an_sse_error_and_value_error() -> None:
    assert issubclass(EventTooLargeError, SSEError)
    assert issubclass(EventTooLargeError, ValueError)


def test_line_exactly_at_the_limit_is_accepted() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    assert decoder.feed(b"data: " + b"x" * 994 + b"\n\n")[0].data == "x" * 994


def test_read_larger_than_limit_with_small_events_is_fine() -> None:
    events = SSEDecoder(max_event_size=100).feed((b"data: " + b"x" * 80 + b"\n\n") * 50)
    assert [len(e.data) for e in events] == [80] * 50


def test_oversized_line_after_small_events_in_one_read_raises() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: a\n\n" + b"data: " + b"x" * 200 + b"\n\n")


def test_limit_is_per_event_not_per_stream() -> None:
    decoder = SSEDecoder(max_event_size=100)
    events = []
    for _ in range(1000):
        events += decoder.feed(b"data: " + b"x" * 80 + b"\n\n")
    assert len(events) == 1000


def test_long_line_in_small_reads_is_linear() -> None:
    # 16 MiB arriving in 1 KiB reads: a decoder that re-copies or re-scans its buffer on
    # each read does ~16k * 8 MiB = 128 GiB of work (tens of seconds); a linear one
    # takes milliseconds.  The bound is 2 s so a slow machine cannot make it flaky.
    size = 16 * 1024 * 1024 - 64
    read = b"x" * 1024
    for tail in (b"\n\n", b"\r\r"):
        decoder = SSEDecoder()
        start = time.perf_counter()
        assert decoder.feed(b"data: ") == []
        for _ in range(size // 1024):
            decoder.feed(read)
        events = decoder.feed(tail)
        elapsed = time.perf_counter() - start
        assert len(events[0].data) == size // 1024 * 1024
        assert elapsed < 2.0


def test_splitter_long_block_in_small_reads_is_linear() -> None:
    splitter = SSEBlockSplitter()
    read = b"data: " + b"x" * 1018 + b"\r\n"
    start = time.perf_counter()
    for _ in range(16000):
        assert splitter.feed(read) == []
    blocks = splitter.feed(b"\r\n")
    assert time.perf_counter() - start < 2.0
    assert len(blocks) == 1
    assert len(blocks[0]) == 16000 * 1026 + 2


# ---- SSEBlockSplitter ---------------------------------------------------------------------

SPLIT_FIXTURES = [
    b"data: a\n\n: ping\n\ndata: b\n\npartial",
    b"data: a\r\n\r\nid: 1\r\ndata: b\r\n\r\n",
    b"data: a\r\rdata: b\r\r\r",
    b"\xef\xbb\xbfdata: a\n\n",
    b"\xef\xbb\xbf\n\n\ndata: a\n\n",
    b"data: a\r\n\ndata: b\n\r\ndata: c\r\r\n",
    b"\xef\xbbdata\n\n",
]


@pytest.mark.parametrize("stream", SPLIT_FIXTURES)
def test_splitter_blocks_join_to_the_input_at_every_chunking(stream: bytes) -> None:
    decode_every_way(stream)  # asserts the join for every chunking


def test_splitter_blocks_are_raw_and_end_at_blank_lines() -> None:
    blocks, rest = split_once([b"data: a\r\n\r\n: ping\n\nid: 1\rdata: b\r\r", b"data: c"])
    assert blocks == [b"data: a\r\n\r\n", b": ping\n\n", b"id: 1\rdata: b\r\r"]
    assert rest == b"data: c"


def test_splitter_crlf_inside_a_block_is_not_a_blank_line() -> None:
    assert split_once([b"data: a\r\ndata: b\r\n\r\n"]) == ([b"data: a\r\ndata: b\r\n\r\n"], b"")


def test_splitter_empty_lines_are_empty_blocks() -> None:
    assert split_once([b"\n\r\n\r"]) == ([b"\n", b"\r\n", b"\r"], b"")


def test_splitter_returns_lone_cr_block_at_once_and_its_lf_alone() -> None:
    splitter = SSEBlockSplitter()
    assert splitter.feed(b"data: a\r\r") == [b"data: a\r\r"]
    assert splitter.feed(b"\ndata: b\n\n") == [b"\n", b"data: b\n\n"]
    assert parse_block(b"\n") is None


def test_splitter_crlf_split_inside_a_block() -> None:
    splitter = SSEBlockSplitter()
    assert splitter.feed(b"data: a\r") == []
    assert splitter.feed(b"\n") == []
    assert splitter.feed(b"\r") == [b"data: a\r\n\r"]
    assert splitter.feed(b"\n") == [b"\n"]


def test_splitter_bom_belongs_to_first_block() -> None:
    splitter = SSEBlockSplitter()
    assert splitter.feed(b"\xef") == []
    assert splitter.feed(b"\xbb\xbf") == []
    assert splitter.feed(b"\ndata: x\n\n") == [b"\xef\xbb\xbf\n", b"data: x\n\n"]


def test_splitter_close_returns_remainder_and_resets() -> None:
    splitter = SSEBlockSplitter()
    assert splitter.feed(b"data: a\n\ndata: b") == [b"data: a\n\n"]
    assert splitter.close() == b"data: b"
    assert splitter.close() == b""
    assert splitter.feed(b"\xef\xbb\xbf\n") == [b"\xef\xbb\xbf\n"]


def test_splitter_raises_on_oversized_block() -> None:
    with pytest.raises(EventTooLargeError, match="max_event_size=100"):
        SSEBlockSplitter(max_event_size=100).feed(b"data: " + b"x" * 200)
    with pytest.raises(EventTooLargeError):
        SSEBlockSplitter(max_event_size=100).feed(b"data: " + b"x" * 200 + b"\n\n")
    with pytest.raises(EventTooLargeError):
        SSEBlockSplitter(max_event_size=100).feed(b"data: " + b"x" * 200 + b"\r\r")


# ---- parse_block and block_is_comment_only -----------------------------------------------


def test_parse_block_decodes_one_block() -> None:
    block = b"event: e\r\nid: 5\r\nretry: 10\r\n: note\r\ndata: a\r\ndata: b\r\n\r\n"
    assert parse_block(block) == E("e", "a\nb", "5", 10)


def test_parse_block_without_data_or_terminator_is_none() -> None:
    assert parse_block(b": ping\n\n") is None
    assert parse_block(b"id: 3\n\n") is None
    assert parse_block(b"data: cut") is None
    assert parse_block(b"") is None


def test_parse_block_bom_only_dropped_at_stream_start() -> None:
    assert parse_block(b"\xef\xbb\xbfdata: x\n\n") == E("message", "x", "", None)
    assert parse_block(b"\xef\xbb\xbfdata: x\n\n", stream_start=False) is None


def test_parse_block_of_several_blocks_gives_the_first_event() -> None:
    assert parse_block(b"data: a\n\ndata: b\n\n") == E("message", "a", "", None)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b": ping\n\n", True),
        (b":\n\n", True),
        (b": a\r\n: b\r\n\r\n", True),
        (b"\xef\xbb\xbf: ping\n\n", True),
        (b"data: x\n\n", False),
        (b": a\ndata: x\n\n", False),
        (b": a\nid: 1\n\n", False),
        (b"\n", False),
        (b"", False),
    ],
)
def test_block_is_comment_only(block: bytes, expected: bool) -> None:
    assert block_is_comment_only(block) is expected


# ---- the event type ------------------------------------------------------------------


def test_server_sent_event_defaults_equality_and_immutability() -> None:
    event = E(data="x")
    assert (event.event, event.data, event.id, event.retry) == ("message", "x", "", None)
    assert event == E("message", "x", "", None)
    assert event != E("message", "y", "", None)
    assert hash(event) == hash(E(data="x"))
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]
