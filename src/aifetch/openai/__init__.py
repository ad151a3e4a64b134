"""OpenAI chat completions: typed chunks, the chunk accumulator and ``ChatStream``.

``ChatStream(response)`` turns a streaming ``/chat/completions`` response into typed
``ChatCompletionChunk`` objects (``for`` or ``async for``) and, at the end, the accumulated
``ChatCompletion`` (``stream.final()``, or ``await stream.afinal()`` to read an async stream
to its end). ``ChatCompletionAccumulator`` is the same accumulation with no I/O, for chunks
obtained any other way.
"""

from ._accumulator import ChatCompletionAccumulator, ToolCallArgumentsError
from ._stream import (
    AsyncStreamingResponse,
    ChatStream,
    InvalidChunkError,
    SyncStreamingResponse,
    TextDeltas,
)
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionTokenLogprob,
    Choice,
    ChoiceDelta,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    Function,
    ToolCall,
    TopLogprob,
    Usage,
    decode_chunk,
)

__all__ = [
    "AsyncStreamingResponse",
    "ChatCompletion",
    "ChatCompletionAccumulator",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionTokenLogprob",
    "ChatStream",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Function",
    "InvalidChunkError",
    "SyncStreamingResponse",
    "TextDeltas",
    "ToolCall",
    "ToolCallArgumentsError",
    "TopLogprob",
    "Usage",
    "decode_chunk",
]
