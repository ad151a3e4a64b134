"""Folding ``chat.completion.chunk`` objects into the ``chat.completion`` they add up to.

Sans-IO: chunks in, a ``ChatCompletion`` out, no reading and no waiting. Text arrives as
many small pieces, so each field collects its pieces in a list and ``final()`` joins them
once: the work is linear in the size of the answer (``str +=`` in a loop is quadratic in the
worst case).

Providers disagree on how they stream the same answer; the rules below are the ones that
give back what the same request returns without streaming:

* ``content``, ``refusal``, ``reasoning_content``, ``reasoning_signature`` and
  tool/function ``arguments`` are concatenated.
* ``role``, and a tool call's ``id``, ``type`` and ``name``, are taken from the first delta
  that has them and never concatenated: vLLM, Ollama and others resend them on later deltas.
* Tool calls are matched by ``index``; when ``index`` is missing (Ollama) by ``id``; a piece
  with neither continues the most recent call. A known ``index`` arriving with a different
  ``id`` starts a new call (some servers number every parallel call 0).
* ``finish_reason``: the last non-null value wins. ``usage``: the last chunk that has one.
* ``id``, ``model``, ``created``, ``system_fingerprint`` and ``service_tier`` come from the
  first chunk that has them (Azure's prompt-filter chunk has ``id: ""``, ``created: 0``).
* Choices are keyed by ``index`` (``n > 1``) and returned sorted by it.
"""

from __future__ import annotations

import json
from typing import Any

from .._errors import ToolCallArgumentsError
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionTokenLogprob,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceLogprobs,
    ChunkChoice,
    Function,
    ToolCall,
    Usage,
)

__all__ = ["ChatCompletionAccumulator", "ToolCallArgumentsError"]


class _ToolCallState:
    """One tool call being assembled."""

    __slots__ = ("arguments", "id", "index", "name", "type")

    def __init__(self, index: int | None, id_: str | None) -> None:
        self.index = index
        self.id = id_
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []

    def add(self, piece: ChoiceDeltaToolCall) -> None:
        if piece.id and not self.id:
            self.id = piece.id
        if piece.type and not self.type:
            self.type = piece.type
        fn = piece.function
        if fn is not None:
            if fn.name and not self.name:
                self.name = fn.name
            if fn.arguments:
                self.arguments.append(fn.arguments)

    def build(self) -> ToolCall:
        return ToolCall(
            id=self.id or "",
            type=self.type or "function",
            function=Function(name=self.name or "", arguments="".join(self.arguments)),
        )


class _ChoiceState:
    """One choice (one of ``n`` answers) being assembled."""

    __slots__ = (
        "content",
        "finish_reason",
        "fn_arguments",
        "fn_name",
        "has_function_call",
        "last_tool",
        "logprobs_content",
        "logprobs_refusal",
        "reasoning",
        "refusal",
        "role",
        "signature",
        "tools",
        "tools_by_id",
        "tools_by_index",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.signature: list[str] = []
        self.tools: list[_ToolCallState] = []
        self.tools_by_index: dict[int, _ToolCallState] = {}
        self.tools_by_id: dict[str, _ToolCallState] = {}
        self.last_tool: _ToolCallState | None = None
        self.has_function_call = False
        self.fn_name: str | None = None
        self.fn_arguments: list[str] = []
        self.logprobs_content: list[ChatCompletionTokenLogprob] | None = None
        self.logprobs_refusal: list[ChatCompletionTokenLogprob] | None = None
        self.finish_reason: str | None = None

    def add(self, choice: ChunkChoice) -> None:
        self._add_delta(choice.delta)
        if choice.logprobs is not None:
            self._add_logprobs(choice.logprobs)
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason

    def _add_delta(self, delta: ChoiceDelta) -> None:
        if delta.role and not self.role:
            self.role = delta.role
        if delta.content is not None:
            self.content.append(delta.content)
        if delta.refusal:
            self.refusal.append(delta.refusal)
        if delta.reasoning_content:
            self.reasoning.append(delta.reasoning_content)
        if delta.reasoning_signature:
            self.signature.append(delta.reasoning_signature)
        if delta.tool_calls:
            for piece in delta.tool_calls:
                self._tool_for(piece).add(piece)
        fc = delta.function_call
        if fc is not None:
            self.has_function_call = True
            if fc.name and not self.fn_name:
                self.fn_name = fc.name
            if fc.arguments:
                self.fn_arguments.append(fc.arguments)

    def _tool_for(self, piece: ChoiceDeltaToolCall) -> _ToolCallState:
        """The call this piece continues, or a new one (rules in the module docstring)."""
        tool: _ToolCallState | None
        if piece.index is not None:
            tool = self.tools_by_index.get(piece.index)
            if tool is not None and piece.id and tool.id and piece.id != tool.id:
                tool = None
        elif piece.id:
            tool = self.tools_by_id.get(piece.id)
        else:
            tool = self.last_tool
        if tool is None:
            tool = _ToolCallState(piece.index, piece.id)
            self.tools.append(tool)
            if piece.index is not None:
                self.tools_by_index[piece.index] = tool
        if piece.id and piece.id not in self.tools_by_id:
            self.tools_by_id[piece.id] = tool
        self.last_tool = tool
        return tool

    def _add_logprobs(self, logprobs: ChoiceLogprobs) -> None:
        if logprobs.content is not None:
            if self.logprobs_content is None:
                self.logprobs_content = []
            self.logprobs_content.extend(logprobs.content)
        if logprobs.refusal is not None:
            if self.logprobs_refusal is None:
                self.logprobs_refusal = []
            self.logprobs_refusal.extend(logprobs.refusal)

    def build(self, index: int) -> Choice:
        tool_calls = [tool.build() for tool in self.tools]
        refusal = "".join(self.refusal) or None
        content: str | None = "".join(self.content)
        # OpenAI answers "content": null, not "", when the message is a tool call, a function
        # call or a refusal; an empty answer with none of those stays "".
        if not content and (not self.content or tool_calls or self.has_function_call or refusal):
            content = None
        message = ChatCompletionMessage(
            role=self.role or "assistant",
            content=content,
            refusal=refusal,
            reasoning_content="".join(self.reasoning) if self.reasoning else None,
            reasoning_signature="".join(self.signature) if self.signature else None,
            tool_calls=tool_calls or None,
            function_call=(
                Function(name=self.fn_name or "", arguments="".join(self.fn_arguments))
                if self.has_function_call
                else None
            ),
        )
        logprobs = None
        if self.logprobs_content is not None or self.logprobs_refusal is not None:
            logprobs = ChoiceLogprobs(
                content=_copy(self.logprobs_content), refusal=_copy(self.logprobs_refusal)
            )
        return Choice(
            index=index, message=message, logprobs=logprobs, finish_reason=self.finish_reason
        )


_Logprobs = list[ChatCompletionTokenLogprob]


def _copy(items: _Logprobs | None) -> _Logprobs | None:
    # final() may be called again after more chunks; its results must not change under the
    # caller's feet.
    return None if items is None else list(items)


class ChatCompletionAccumulator:
    """Adds up ``ChatCompletionChunk`` objects; ``final()`` returns the ``ChatCompletion``.

    ``final()`` may be called at any time and more than once; each call builds a new object
    from what has been added so far.
    """

    __slots__ = (
        "_choices",
        "_created",
        "_id",
        "_model",
        "_service_tier",
        "_system_fingerprint",
        "_usage",
    )

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self._id = ""
        self._model = ""
        self._created = 0
        self._system_fingerprint: str | None = None
        self._service_tier: str | None = None
        self._usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Fold one chunk in."""
        self._take_header(chunk)
        if chunk.usage is not None:
            self._usage = chunk.usage
        choices = self._choices
        for choice in chunk.choices:
            state = choices.get(choice.index)
            if state is None:
                state = choices[choice.index] = _ChoiceState()
            state.add(choice)

    def _take_header(self, chunk: ChatCompletionChunk) -> None:
        if not self._id and chunk.id:
            self._id = chunk.id
        if not self._model and chunk.model:
            self._model = chunk.model
        if not self._created and chunk.created:
            self._created = chunk.created
        if self._system_fingerprint is None and chunk.system_fingerprint:
            self._system_fingerprint = chunk.system_fingerprint
        if self._service_tier is None and chunk.service_tier:
            self._service_tier = chunk.service_tier

    def final(self) -> ChatCompletion:
        """The completion the chunks added so far add up to."""
        return ChatCompletion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[self._choices[i].build(i) for i in sorted(self._choices)],
            usage=self._usage,
            service_tier=self._service_tier,
            system_fingerprint=self._system_fingerprint,
        )

    def tool_calls_parsed(self, choice: int = 0) -> list[tuple[ToolCall, Any]]:
        """The tool calls of choice ``choice``, each with its arguments decoded from JSON.

        Empty ``arguments`` decode to ``{}``: some servers send ``""`` for a function that
        takes no parameters. Raises ``ToolCallArgumentsError`` (a ``ValueError``) naming the
        call when its arguments are not valid JSON.
        """
        state = self._choices.get(choice)
        if state is None:
            return []
        calls = [tool.build() for tool in state.tools]
        return [(call, _parse_arguments(call, pos)) for pos, call in enumerate(calls)]


def _parse_arguments(call: ToolCall, position: int) -> Any:
    text = call.function.arguments
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolCallArgumentsError(call, position, exc) from exc
