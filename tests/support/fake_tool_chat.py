"""An OpenAI chat upstream that calls tools, for multi-turn tool loops through the gateway.

``ToolChat`` answers ``POST /v1/chat/completions`` (stream or not) with the fake upstream's
own chat behaviours: when the request declares tools and its last message is not a tool
result, it calls the first tool (``ARGUMENTS``, streamed in several pieces); otherwise it
answers with text naming the tool results it was given. It keeps the requests it answered
in ``received``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_upstream import (
    Behaviour,
    Exchange,
    RecordedRequest,
    chat_completion,
    chat_stream,
)

CALL_ID = "call_fakeToolChat01"
ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'


def answer_for(payload: dict[str, Any]) -> tuple[str, list[dict[str, str]] | None]:
    """(text, tool calls) the upstream answers ``payload`` with."""
    messages = payload.get("messages") or []
    tools = payload.get("tools") or []
    last = messages[-1] if messages else {}
    if tools and last.get("role") != "tool":
        name = tools[0]["function"]["name"]
        return "", [{"id": CALL_ID, "name": name, "arguments": ARGUMENTS}]
    results = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
    if results:
        return "Tool results: " + "; ".join(results), None
    return "Hello from the tool chat", None


@dataclass
class ToolChat:
    received: list[RecordedRequest] = field(default_factory=list)

    async def run(self, ex: Exchange) -> None:
        self.received.append(ex.request)
        payload = ex.request.json()
        text, calls = answer_for(payload)
        behaviour: Behaviour
        if payload.get("stream"):
            behaviour = chat_stream(content=text, tool_calls=calls)
        else:
            behaviour = chat_completion(text or None, tool_calls=calls)
        await behaviour.run(ex)
