"""Server-sent events: decode, split and encode ``text/event-stream`` bytes, without I/O.

The decoder follows the WHATWG HTML Standard §9.2.5-§9.2.6 exactly, at any chunking.
"""

from ._errors import EventTooLargeError, SSEError
from ._sse import (
    ServerSentEvent,
    SSEBlockSplitter,
    SSEDecoder,
    block_is_comment_only,
    encode_comment,
    encode_event,
    parse_block,
)

__all__ = [
    "EventTooLargeError",
    "SSEBlockSplitter",
    "SSEDecoder",
    "SSEError",
    "ServerSentEvent",
    "block_is_comment_only",
    "encode_comment",
    "encode_event",
    "parse_block",
]
