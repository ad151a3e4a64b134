"""Realistic ``chat.completion.chunk`` sequences, as real providers stream them, each with
the non-streaming answer the same request gives.

``Case.chunks`` are the decoded JSON payloads of the stream's ``data:`` lines, in order.
``Case.expected`` is the non-stream ``chat.completion`` JSON, written out by hand in OpenAI's
shape, restricted to the fields ``aifetch.openai.ChatCompletion`` models (provider extras
such as Azure's ``content_filter_results`` or OpenAI's ``annotations`` are left out).
``sse_body`` turns chunks into the bytes of a ``text/event-stream`` body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["CASES", "CASES_BY_NAME", "Case", "chunk", "sse_body"]

Json = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    chunks: list[Json]
    expected: Json


def chunk(
    choices: list[Json],
    *,
    id: str,
    model: str,
    created: int,
    **extra: Any,
) -> Json:
    """A chunk payload with the header fields every chunk repeats."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        **extra,
        "choices": choices,
    }


def sse_body(chunks: list[Json], *, done: bool = True, trailing: bytes = b"") -> bytes:
    """The event stream body: one ``data:`` event per chunk, then ``data: [DONE]``."""
    parts = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks]
    if done:
        parts.append(b"data: [DONE]\n\n")
    return b"".join(parts) + trailing


def _delta(delta: Json, index: int = 0, finish: str | None = None, **extra: Any) -> Json:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}


def _message(content: str | None, **extra: Any) -> Json:
    return {"role": "assistant", "content": content, "refusal": None, **extra}


def _choice(message: Json, finish: str, index: int = 0, logprobs: Json | None = None) -> Json:
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}


def _completion(
    choices: list[Json],
    *,
    id: str,
    model: str,
    created: int,
    usage: Json | None = None,
    service_tier: str | None = None,
    system_fingerprint: str | None = None,
) -> Json:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
        "service_tier": service_tier,
        "system_fingerprint": system_fingerprint,
    }


def _call(id: str, name: str, arguments: str) -> Json:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- OpenAI: plain content, no usage requested ---------------------------------------------

_OA: Json = {
    "id": "chatcmpl-AjF3kR8x2QvT9mNpL0sYzWbC1dE",
    "model": "gpt-4o-mini-2024-07-18",
    "created": 1735000000,
}
_OA_EXTRA: Json = {"service_tier": "default", "system_fingerprint": "fp_0aa8d3e20b"}

OPENAI_CONTENT = Case(
    "openai_content",
    [
        chunk([_delta({"role": "assistant", "content": "", "refusal": None})], **_OA, **_OA_EXTRA),
        chunk([_delta({"content": "Hello"})], **_OA, **_OA_EXTRA),
        chunk([_delta({"content": "!"})], **_OA, **_OA_EXTRA),
        chunk([_delta({"content": " How can I help you today?"})], **_OA, **_OA_EXTRA),
        chunk([_delta({}, finish="stop")], **_OA, **_OA_EXTRA),
    ],
    _completion(
        [_choice(_message("Hello! How can I help you today?"), "stop")], **_OA, **_OA_EXTRA
    ),
)

# --- OpenAI with stream_options.include_usage: "usage": null on every chunk, then a final
# chunk with empty choices carrying the usage ----------------------------------------------

_OA_USAGE: Json = {
    "prompt_tokens": 19,
    "completion_tokens": 3,
    "total_tokens": 22,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
OPENAI_USAGE_CHUNK = Case(
    "openai_usage_chunk",
    [
        chunk(
            [_delta({"role": "assistant", "content": "", "refusal": None})],
            **_OA,
            **_OA_EXTRA,
            usage=None,
        ),
        chunk([_delta({"content": "Paris."})], **_OA, **_OA_EXTRA, usage=None),
        chunk([_delta({}, finish="stop")], **_OA, **_OA_EXTRA, usage=None),
        chunk([], **_OA, **_OA_EXTRA, usage=_OA_USAGE),
    ],
    _completion([_choice(_message("Paris."), "stop")], **_OA, **_OA_EXTRA, usage=_OA_USAGE),
)

# --- n=2: the two choices' deltas interleave, choice 1 starting first -------------------------

N2_INTERLEAVED = Case(
    "n2_interleaved",
    [
        chunk([_delta({"role": "assistant", "content": "", "refusal": None}, 1)], **_OA),
        chunk([_delta({"role": "assistant", "content": "", "refusal": None}, 0)], **_OA),
        chunk([_delta({"content": "Heads"}, 1)], **_OA),
        chunk([_delta({"content": "Tails"}, 0)], **_OA),
        chunk([_delta({"content": "."}, 0)], **_OA),
        chunk([_delta({}, 0, "stop")], **_OA),
        chunk([_delta({"content": ", again."}, 1)], **_OA),
        chunk([_delta({}, 1, "length")], **_OA),
    ],
    _completion(
        [
            _choice(_message("Tails."), "stop", 0),
            _choice(_message("Heads, again."), "length", 1),
        ],
        **_OA,
    ),
)

# --- OpenAI parallel tool calls: each call announced with id and name, then argument slices
# keyed by index ---------------------------------------------------------------------------


def _tc(index: int, arguments: str, id: str | None = None, name: str | None = None) -> Json:
    piece: Json = {"index": index}
    if id is not None:
        piece["id"] = id
        piece["type"] = "function"
    function: Json = {"arguments": arguments}
    if name is not None:
        function = {"name": name, **function}
    piece["function"] = function
    return piece


PARALLEL_TOOL_CALLS = Case(
    "parallel_tool_calls",
    [
        chunk(
            [
                _delta(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [_tc(0, "", "call_Wd2uM1", "get_weather")],
                        "refusal": None,
                    }
                )
            ],
            **_OA,
            **_OA_EXTRA,
        ),
        chunk([_delta({"tool_calls": [_tc(0, '{"ci')]})], **_OA, **_OA_EXTRA),
        chunk([_delta({"tool_calls": [_tc(0, 'ty": "Par')]})], **_OA, **_OA_EXTRA),
        chunk([_delta({"tool_calls": [_tc(0, 'is"}')]})], **_OA, **_OA_EXTRA),
        chunk(
            [_delta({"tool_calls": [_tc(1, "", "call_Kq8vB3", "get_time")]})],
            **_OA,
            **_OA_EXTRA,
        ),
        chunk([_delta({"tool_calls": [_tc(1, '{"tz": ')]})], **_OA, **_OA_EXTRA),
        chunk([_delta({"tool_calls": [_tc(1, '"Europe/Paris"}')]})], **_OA, **_OA_EXTRA),
        chunk([_delta({}, finish="tool_calls")], **_OA, **_OA_EXTRA),
    ],
    _completion(
        [
            _choice(
                _message(
                    None,
                    tool_calls=[
                        _call("call_Wd2uM1", "get_weather", '{"city": "Paris"}'),
                        _call("call_Kq8vB3", "get_time", '{"tz": "Europe/Paris"}'),
                    ],
                ),
                "tool_calls",
            )
        ],
        **_OA,
        **_OA_EXTRA,
    ),
)

# --- vLLM: the first two tool-call deltas both carry index 0 and the same id; vLLM also adds
# "stop_reason" to each choice and puts usage in a final chunk ----------------------------

_VLLM: Json = {
    "id": "chatcmpl-5c1e7b0d9a2f4e6b8c3d1a0f9e8d7c6b",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "created": 1735000100,
}
_VLLM_USAGE: Json = {"prompt_tokens": 210, "completion_tokens": 21, "total_tokens": 231}
VLLM_DUPLICATE_INDEX = Case(
    "vllm_duplicate_index",
    [
        chunk([_delta({"role": "assistant", "content": ""})], **_VLLM),
        chunk(
            [
                _delta(
                    {
                        "tool_calls": [
                            {
                                "id": "chatcmpl-tool-8e1f",
                                "type": "function",
                                "index": 0,
                                "function": {"name": "get_weather"},
                            }
                        ]
                    },
                    stop_reason=None,
                )
            ],
            **_VLLM,
        ),
        chunk(
            [
                _delta(
                    {
                        "tool_calls": [
                            {
                                "id": "chatcmpl-tool-8e1f",
                                "type": "function",
                                "index": 0,
                                "function": {"arguments": '{"city": "'},
                            }
                        ]
                    },
                    stop_reason=None,
                )
            ],
            **_VLLM,
        ),
        chunk(
            [_delta({"tool_calls": [_tc(0, 'Paris"}')]}, stop_reason=None)],
            **_VLLM,
        ),
        chunk([_delta({"content": ""}, finish="tool_calls", stop_reason=128008)], **_VLLM),
        chunk([], **_VLLM, usage=_VLLM_USAGE),
    ],
    _completion(
        [
            _choice(
                _message(
                    None,
                    tool_calls=[_call("chatcmpl-tool-8e1f", "get_weather", '{"city": "Paris"}')],
                ),
                "tool_calls",
            )
        ],
        **_VLLM,
        usage=_VLLM_USAGE,
    ),
)

# --- Ollama: tool calls without "index", told apart by id, whole arguments in one delta; the
# role is resent on every chunk -------------------------------------------------------------

_OLLAMA: Json = {"id": "chatcmpl-412", "model": "llama3.1:8b", "created": 1735000200}
_OLLAMA_EXTRA: Json = {"system_fingerprint": "fp_ollama"}
OLLAMA_NO_INDEX = Case(
    "ollama_no_index",
    [
        chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [_call("call_k3x9a1", "get_weather", '{"city":"Paris"}')],
                    },
                    "finish_reason": None,
                }
            ],
            **_OLLAMA,
            **_OLLAMA_EXTRA,
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [_call("call_p2m7c4", "get_time", '{"tz":"Europe/Paris"}')],
                    },
                    "finish_reason": None,
                }
            ],
            **_OLLAMA,
            **_OLLAMA_EXTRA,
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": "tool_calls",
                }
            ],
            **_OLLAMA,
            **_OLLAMA_EXTRA,
        ),
    ],
    _completion(
        [
            _choice(
                _message(
                    None,
                    tool_calls=[
                        _call("call_k3x9a1", "get_weather", '{"city":"Paris"}'),
                        _call("call_p2m7c4", "get_time", '{"tz":"Europe/Paris"}'),
                    ],
                ),
                "tool_calls",
            )
        ],
        **_OLLAMA,
        **_OLLAMA_EXTRA,
    ),
)

# --- A server that resends id, type and name on every tool-call delta -------------------------

_RESEND: Json = {"id": "cmpl-e5b2a9", "model": "mistral-large-latest", "created": 1735000300}
NAME_RESENT = Case(
    "name_resent",
    [
        chunk([_delta({"role": "assistant", "content": ""})], **_RESEND),
        chunk([_delta({"tool_calls": [_tc(0, '{"query": ', "Tq3nX8", "search")]})], **_RESEND),
        chunk([_delta({"tool_calls": [_tc(0, '"msgspec', "Tq3nX8", "search")]})], **_RESEND),
        chunk([_delta({"tool_calls": [_tc(0, ' structs"}', "Tq3nX8", "search")]})], **_RESEND),
        chunk([_delta({"content": ""}, finish="tool_calls")], **_RESEND),
    ],
    _completion(
        [
            _choice(
                _message(
                    None, tool_calls=[_call("Tq3nX8", "search", '{"query": "msgspec structs"}')]
                ),
                "tool_calls",
            )
        ],
        **_RESEND,
    ),
)

# --- Azure OpenAI: a first chunk with empty choices and prompt_filter_results (id "",
# created 0), content_filter_results on every choice (once with a nested "error" when a filter
# could not run), and a trailing content-filter chunk whose choice has no delta --------------

_AZ: Json = {
    "id": "chatcmpl-AzR7pQ2wE4tY6uI8oP0aS",
    "model": "gpt-4o-2024-08-06",
    "created": 1735000400,
}
_AZ_EXTRA: Json = {"system_fingerprint": "fp_b705f0c291"}
_SAFE: Json = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
AZURE_CONTENT_FILTER = Case(
    "azure_content_filter",
    [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE}],
        },
        chunk(
            [
                _delta(
                    {"role": "assistant", "content": "", "refusal": None}, content_filter_results={}
                )
            ],
            **_AZ,
            **_AZ_EXTRA,
        ),
        chunk([_delta({"content": "Sure"}, content_filter_results=_SAFE)], **_AZ, **_AZ_EXTRA),
        chunk(
            [
                _delta(
                    {"content": ", here it is."},
                    content_filter_results={
                        "error": {"code": "content_filter_error", "message": "not filtered"}
                    },
                )
            ],
            **_AZ,
            **_AZ_EXTRA,
        ),
        chunk([_delta({}, finish="stop", content_filter_results={})], **_AZ, **_AZ_EXTRA),
        {
            "choices": [
                {
                    "content_filter_offsets": {
                        "check_offset": 35,
                        "start_offset": 35,
                        "end_offset": 49,
                    },
                    "content_filter_results": _SAFE,
                    "finish_reason": None,
                    "index": 0,
                }
            ],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
        },
    ],
    _completion([_choice(_message("Sure, here it is."), "stop")], **_AZ, **_AZ_EXTRA),
)

# --- DeepSeek reasoner: reasoning_content first (content null), then content (reasoning null);
# usage on the last chunk together with finish_reason ---------------------------------------

_DS: Json = {
    "id": "8f3c2a1b-6d4e-4f5a-9b8c-7d6e5f4a3b2c",
    "model": "deepseek-reasoner",
    "created": 1735000500,
}
_DS_EXTRA: Json = {"system_fingerprint": "fp_5417b77867_prod0225"}
_DS_USAGE_WIRE: Json = {
    "prompt_tokens": 12,
    "completion_tokens": 40,
    "total_tokens": 52,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 31},
    "prompt_cache_hit_tokens": 0,
    "prompt_cache_miss_tokens": 12,
}
# The cache hit/miss counts are DeepSeek additions that Usage does not model.
_DS_USAGE: Json = {k: v for k, v in _DS_USAGE_WIRE.items() if not k.startswith("prompt_cache")}
DEEPSEEK_REASONING = Case(
    "deepseek_reasoning",
    [
        chunk(
            [_delta({"role": "assistant", "content": None, "reasoning_content": ""})],
            **_DS,
            **_DS_EXTRA,
        ),
        chunk([_delta({"content": None, "reasoning_content": "The user"})], **_DS, **_DS_EXTRA),
        chunk([_delta({"content": None, "reasoning_content": " greets me."})], **_DS, **_DS_EXTRA),
        chunk([_delta({"content": "Hi", "reasoning_content": None})], **_DS, **_DS_EXTRA),
        chunk([_delta({"content": " there!", "reasoning_content": None})], **_DS, **_DS_EXTRA),
        chunk(
            [_delta({"content": "", "reasoning_content": None}, finish="stop")],
            **_DS,
            **_DS_EXTRA,
            usage=_DS_USAGE_WIRE,
        ),
    ],
    _completion(
        [_choice(_message("Hi there!", reasoning_content="The user greets me."), "stop")],
        **_DS,
        **_DS_EXTRA,
        usage=_DS_USAGE,
    ),
)

# --- OpenAI structured-output refusal: refusal text, content null --------------------------

REFUSAL = Case(
    "refusal",
    [
        chunk([_delta({"role": "assistant", "content": None, "refusal": ""})], **_OA, **_OA_EXTRA),
        chunk([_delta({"refusal": "I'm sorry"})], **_OA, **_OA_EXTRA),
        chunk([_delta({"refusal": ", I can't help with that."})], **_OA, **_OA_EXTRA),
        chunk([_delta({}, finish="stop")], **_OA, **_OA_EXTRA),
    ],
    _completion(
        [
            _choice(
                {
                    "role": "assistant",
                    "content": None,
                    "refusal": "I'm sorry, I can't help with that.",
                },
                "stop",
            )
        ],
        **_OA,
        **_OA_EXTRA,
    ),
)

# --- OpenAI with logprobs=true, top_logprobs=2 ------------------------------------------------


def _lp(token: str, logprob: float, alt: str, alt_logprob: float) -> Json:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": token, "logprob": logprob, "bytes": list(token.encode())},
            {"token": alt, "logprob": alt_logprob, "bytes": list(alt.encode())},
        ],
    }


_LP_HI = _lp("Hi", -0.0012, "Hello", -6.75)
_LP_BANG = _lp("!", -0.31, ".", -1.42)
LOGPROBS = Case(
    "logprobs",
    [
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": {"content": [], "refusal": None},
                    "finish_reason": None,
                }
            ],
            **_OA,
            **_OA_EXTRA,
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"content": "Hi"},
                    "logprobs": {"content": [_LP_HI], "refusal": None},
                    "finish_reason": None,
                }
            ],
            **_OA,
            **_OA_EXTRA,
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"content": "!"},
                    "logprobs": {"content": [_LP_BANG], "refusal": None},
                    "finish_reason": None,
                }
            ],
            **_OA,
            **_OA_EXTRA,
        ),
        chunk([_delta({}, finish="stop")], **_OA, **_OA_EXTRA),
    ],
    _completion(
        [
            _choice(
                _message("Hi!"), "stop", logprobs={"content": [_LP_HI, _LP_BANG], "refusal": None}
            )
        ],
        **_OA,
        **_OA_EXTRA,
    ),
)

# --- The deprecated single function_call ----------------------------------------------------

LEGACY_FUNCTION_CALL = Case(
    "legacy_function_call",
    [
        chunk(
            [
                _delta(
                    {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "get_weather", "arguments": ""},
                        "refusal": None,
                    }
                )
            ],
            **_OA,
            **_OA_EXTRA,
        ),
        chunk([_delta({"function_call": {"arguments": '{\n  "'}})], **_OA, **_OA_EXTRA),
        chunk([_delta({"function_call": {"arguments": 'city": "Oslo"\n}'}})], **_OA, **_OA_EXTRA),
        chunk([_delta({}, finish="function_call")], **_OA, **_OA_EXTRA),
    ],
    _completion(
        [
            _choice(
                _message(
                    None,
                    function_call={"name": "get_weather", "arguments": '{\n  "city": "Oslo"\n}'},
                ),
                "function_call",
            )
        ],
        **_OA,
        **_OA_EXTRA,
    ),
)

CASES: list[Case] = [
    OPENAI_CONTENT,
    OPENAI_USAGE_CHUNK,
    N2_INTERLEAVED,
    PARALLEL_TOOL_CALLS,
    VLLM_DUPLICATE_INDEX,
    OLLAMA_NO_INDEX,
    NAME_RESENT,
    AZURE_CONTENT_FILTER,
    DEEPSEEK_REASONING,
    REFUSAL,
    LOGPROBS,
    LEGACY_FUNCTION_CALL,
]
CASES_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
