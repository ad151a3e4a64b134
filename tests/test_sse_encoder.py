"""encode_event / encode_comment: exact bytes, validation, and decoding them back."""

from __future__ import annotations

import pytest

from aifetch import sse
from aifetch.sse import (
    ServerSentEvent,
    SSEDecoder,
    block_is_comment_only,
    encode_comment,
    encode_event,
    parse_block,
)


def decode(stream: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return decoder.feed(stream)


def test_public_names_are_sorted_and_importable() -> None:
    assert sse.__all__ == sorted(sse.__all__)
    assert all(hasattr(sse, name) for name in sse.__all__)


def test_plain_event_bytes() -> None:
    assert encode_event("hello") == b"data: hello\n\n"


def test_all_fields_bytes_in_order() -> None:
    encoded = encode_event("a\nb", event="update", id="7", retry=1500)
    assert encoded == b"event: update\nid: 7\nretry: 1500\ndata: a\ndata: b\n\n"
    assert decode(encoded) == [ServerSentEvent("update", "a\nb", "7", 1500)]


def test_empty_data_is_one_bare_data_line() -> None:
    assert encode_event("") == b"data:\n\n"
    assert decode(encode_event(""))[0].data == ""


def test_empty_lines_inside_data_survive() -> None:
    data = "\na\n\nb\n"
    assert encode_event(data) == b"data:\ndata: a\ndata:\ndata: b\ndata:\n\n"
    assert decode(encode_event(data))[0].data == data


def test_leading_spaces_and_colons_in_data_survive() -> None:
    for data in (" x", "  x", ":x", "data: x", "\ufeffx", "a\u2028b\x85c"):
        assert decode(encode_event(data))[0].data == data


def test_non_ascii_round_trips() -> None:
    event = ServerSentEvent("\u00e9v\u00e9nement", "\u4e2d\U0001f600", "\u20ac1", None)
    encoded = encode_event(event.data, event=event.event, id=event.id)
    assert decode(encoded) == [event]


@pytest.mark.parametrize(("data", "back"), [("a\r\nb", "a\nb"), ("a\rb", "a\nb"), ("\r", "\n")])
def test_cr_and_crlf_in_data_come_back_as_lf(data: str, back: str) -> None:
    # CR, LF and CRLF all end lines in an event stream (§9.2.5), so LF is the only line
    # ending a decoder can give back.
    assert decode(encode_event(data))[0].data == back


def test_empty_id_is_sent_and_resets_last_event_id() -> None:
    assert encode_event("x", id="") == b"id:\ndata: x\n\n"
    decoder = SSEDecoder()
    decoder.feed(encode_event("a", id="1"))
    assert decoder.feed(encode_event("b", id="")) == [ServerSentEvent("message", "b", "", None)]
    assert decoder.last_event_id == ""


def test_empty_event_type_decodes_as_message() -> None:
    assert encode_event("x", event="") == b"event:\ndata: x\n\n"
    assert decode(encode_event("x", event=""))[0].event == "message"


def test_retry_zero_is_allowed() -> None:
    assert decode(encode_event("x", retry=0))[0].retry == 0


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n", "a\x00b"])
@pytest.mark.parametrize("name", ["event", "id"])
def test_line_breaks_and_nul_in_event_or_id_are_rejected(name: str, bad: str) -> None:
    if name == "event":
        with pytest.raises(ValueError, match="SSE event type cannot contain"):
            encode_event("x", event=bad)
    else:
        with pytest.raises(ValueError, match="SSE id cannot contain"):
            encode_event("x", id=bad)


def test_negative_retry_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode_event("x", retry=-1)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        encode_event("\ud800")


def test_comment_bytes() -> None:
    assert encode_comment() == b":\n\n"
    assert encode_comment("ping") == b": ping\n\n"
    assert encode_comment("a\nb\r\nc\rd") == b": a\n: b\n: c\n: d\n\n"
    assert encode_comment("a\n\nb") == b": a\n:\n: b\n\n"


def test_comment_decodes_to_its_text_and_no_event() -> None:
    comments: list[str] = []
    decoder = SSEDecoder(on_comment=comments.append)
    assert decoder.feed(encode_comment(" x\nping") + encode_event("after")) == [
        ServerSentEvent(data="after")
    ]
    assert comments == [" x", "ping"]


def test_comment_block_is_a_heartbeat() -> None:
    for text in ("", "ping", "a\nb"):
        block = encode_comment(text)
        assert block_is_comment_only(block)
        assert parse_block(block) is None
    assert not block_is_comment_only(encode_event("x"))


def test_encoded_comment_does_not_reset_pending_id() -> None:
    decoder = SSEDecoder()
    decoder.feed(encode_event("a", id="5") + encode_comment("ping"))
    assert decoder.last_event_id == "5"
