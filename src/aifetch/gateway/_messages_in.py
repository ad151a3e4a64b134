"""The dialect-in stage of ``POST /v1/messages``: an Anthropic Messages request becomes the
OpenAI chat request every later stage reads.

After it, ``ctx.body`` and ``ctx.fields`` are the chat request
(``aifetch.providers.messages_request_to_chat``: docs/DIALECTS.md has the field table),
``ctx.route`` is ``/v1/chat/completions``, so limits, pipes and the dispatcher see one
shape whichever API the caller speaks. The request as it came is kept (``ctx.native``): an
anthropic upstream gets it byte-exact rather than translated twice (``_kinds``). What has
no OpenAI equivalent (a server tool, a document block) is refused here, 400 with the field
named, in Anthropic's error shape (``_messages_out`` makes every error on the route so).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import NamedTuple

from aifetch.providers import TranslationError, messages_request_to_chat

from ._call import CHAT
from ._context import Handler, RequestContext
from ._kinds import translation_refused
from ._parse import RoutingFields, decode_fields

__all__ = ["MessagesIn", "Native"]


class Native(NamedTuple):
    """A caller's request in its own wire format, and the fields read from it."""

    body: bytes
    fields: RoutingFields


class MessagesIn:
    next: Handler

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        fields = ctx.fields
        assert fields is not None  # ReadBody read them
        try:
            inbound = messages_request_to_chat(ctx.body)
        except TranslationError as exc:
            raise translation_refused(exc).error() from None
        ctx.native = Native(ctx.body, fields)
        ctx.body = inbound.body
        ctx.fields = decode_fields(inbound.body)
        ctx.route = CHAT
        return self.next(ctx)
