"""The Gemini stream translator on recorded transcripts, whole and at every split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aifetch.providers import ProviderUsage
from aifetch.providers._gemini_stream import GeminiStreamTranslator
from aifetch.sse import ServerSentEvent, SSEBlockSplitter

from .helpers import CREATED, DONE, OpenAIChunks, check_every_split, load, parse, translate


def make(include_usage: bool = True) -> Callable[[], GeminiStreamTranslator]:
    return lambda: GeminiStreamTranslator(include_usage=include_usage, created=CREATED)


TEXT_SIGNATURE = (
    "EqsFCqgFAb4+9vvtAF5n87lB4OGDOoTRMOqp35jW65XsYXh6BySMwl9nvrbAvPcl2U0xITaYUyV4CmREEDB1z0ZP"
    "pCg7iEwiZcj40Eh1jXoL8Y/BbPqxdgZKvKxdBsJx92y2ML5ytajQHVFQb9ohEMMnjs9uNadLAhDEsOU1nC5tl3FQk"
    "x94uaGfWvg61bJT3Y9OxFdo/kbpm4RBngvYhVkBzHKkHBj72T2bUd8J4HPssi7ORC5iPosPRIOyH/CAVHEtMzFYM"
    "wb7OhRu+CW8Z9u7gDieME5iJjXtJtLrNGDxgR7XtWfRRyGjsj6uDS+KvjR3SUSWPdn5eeH6w+LXZm1X///Hvhhcx"
    "+NHxsuGjF3fGhyzTVAoIzk0lxyB4+/A9I4Xa0o/T4coVDiewMzGZDwmket//ig8x9UC8cyWr/hy1joZWUO7ooJlL"
    "ncv8gy4Ng+y1JdievZokSFDNWfMMNAQr3kgUwJDucqDp44C1xMtgR3lhJ75IBBnprHCE/ThgvNXujmqNkwAjp5dS"
    "4PjVbrw8fqSylfE80tvU0g9dXqg4pEyG+hGIxbANLhsWjAKLqh69hyqvVLg2Ds3wppphf61IfC4VoeLWj85CjBZM"
    "f+k85NsUIJQ6+DQS9IPNbM29ZOzpUbHoWKJB6VzNCSJse7Pi07L+pd6skl77km00y4lJdHIGHfEgi8PaOonakBcx"
    "bRqKzGJAA/urlP0tiWya2fTWrvNZOybJHyyofNNSI4s5y76yKEjP1wnPqC7ujrQk6xb7eyCeqH9ekByy3vv0JfgE"
    "RFptoSUoG2toIr9M3lS/LKpnwfCvZh+z3J0iMb83d4MaPKhGhE49J4660XUsEmjygAZNi9HnjfC3KtaU/07Sx4JC"
    "ezMtpsLKUxBgy4xaNqwew3FwAG37eeWcow="
)
CALL_SIGNATURE = (
    "EqUCCqICAb4+9vsh8Pd5taZVoPzSvjWWwzBrvhEQWBLCGa7IdY8FBMm7Z6dCKFU3Ft0la15gF7RaHe1NlPRygQec"
    "0bFwPDfMwGcUOMNiJiNIKxusCs4ejCZRuouNYQ4etEIt7CujEUHiILLfZXSJZYhs4UCrD2bLqPq0sE0lWgYJnzHk"
    "kKUOnMsA2hKffAhtF4DWn5INYj8pPssvch/2VpDFW2F9XSE04zLDzkIWF2eztJX50Y0lTehRZC3FW7fOrXCzGx+P"
    "wdataD6eXlF5O1zn+86XtmktOs2DEp4o1PMvXFFAXe8GGvPt8Idf3UtHMq7AsapwMW9sjiKj+FJk54m+9LMTSaj7"
    "C86smfvoQryYBEHTVazr1bEnpl4bPG5JUtm2yAMkHj4="
)


def _text() -> list[Any]:
    c = OpenAIChunks("bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-3-pro-preview")
    return [
        c.role(),
        *c.text("There are **3**", ' "r"s in strawberry.\n\nst**r**awbe**rr**y'),
        c.signature(TEXT_SIGNATURE),  # on the last, empty, text part
        c.finish("stop"),
        c.usage(9, 23 + 185, reasoning=185),  # thoughts count as completion tokens
        DONE,
    ]


def _function_call() -> list[Any]:
    c = OpenAIChunks("b36LacjwM668nsEP2tbsgQQ", "gemini-3-pro-preview")
    return [
        c.role(),
        c.signature(CALL_SIGNATURE),
        # No id from Gemini: one made from the response id and the call's position.
        c.tool(0, "call_b36LacjwM668nsEP2tbsgQQ_0", "weather", '{"location":"San Francisco"}'),
        c.finish("tool_calls"),
        c.usage(29, 15 + 45, reasoning=45),
        DONE,
    ]


def _thoughts_cached() -> list[Any]:
    c = OpenAIChunks("dX6LadKVC7SZ28oPr9yJoQs", "gemini-2.5-flash")
    signature = (
        "Eo0HCooHAb4+9vutXdtKMt+r7Z3gLh52ZQ3RKYDzp4A6PHh0dLuvI1KwnLxDS/qm8wn4Gm9NNNQ1nBS/"
        "rrCAvr4GUTqanTkyxQb0ctdgoMiQJ"
    )
    return [
        c.role(),
        *c.reasoning(
            "**Counting the letters**\n\nI am spelling out strawberry and counting each r."
        ),
        *c.text('There are **3** "r"s in strawberry.'),
        c.signature(signature),
        c.finish("stop"),
        c.usage(4112, 11 + 50, cached=4096, reasoning=50),
        DONE,
    ]


def _parallel_calls() -> list[Any]:
    c = OpenAIChunks("QHiLaa6LBrb8vdIPoNztsAg", "gemini-3.1-flash-lite")
    return [
        c.role(),
        c.signature("AY89a19YsnFp7FOSIejJDV9XuMU996D+ZaDJiD6L9EEi+Lh+VGTEGqM3Lip3DPI7QzY="),
        c.tool(0, "call_QHiLaa6LBrb8vdIPoNztsAg_0", "get_weather", '{"city":"Paris"}'),
        c.tool(1, "call_QHiLaa6LBrb8vdIPoNztsAg_1", "get_weather", '{"city":"Tokyo"}'),
        c.finish("tool_calls"),
        c.usage(61, 20),
        DONE,
    ]


def _max_tokens() -> list[Any]:
    c = OpenAIChunks("bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-2.0-flash")
    return [
        c.role(),
        *c.text("There are **3**", ' "r"s'),
        c.finish("length"),
        c.usage(9, 8),
        DONE,
    ]


def _safety() -> list[Any]:
    c = OpenAIChunks("M3iLaY-AI7zTxN8P3Piw4Qg", "gemini-2.0-flash")
    return [
        c.role(),
        *c.text("I can explain how"),
        c.finish("content_filter"),
        c.usage(12, 4),
        DONE,
    ]


def _error_mid_stream() -> list[Any]:
    c = OpenAIChunks("bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-2.0-flash")
    error = {"message": "The model is overloaded. Please try again later."}
    error |= {"type": "server_error", "param": None, "code": "unavailable"}
    return [c.role(), *c.text("There are **3**"), ("error", {"error": error})]


CASES = {
    "gemini_text.sse": _text,
    "gemini_function_call.sse": _function_call,
    "gemini_thoughts_cached.sse": _thoughts_cached,
    "gemini_parallel_calls.sse": _parallel_calls,
    "gemini_max_tokens.sse": _max_tokens,
    "gemini_safety.sse": _safety,
    "gemini_error_mid_stream.sse": _error_mid_stream,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_transcript_translates_exactly_at_every_split(name: str) -> None:
    translator = check_every_split(make(), load(name), CASES[name]())
    assert translator.done is (name != "gemini_error_mid_stream.sse")


def test_usage_is_exposed_for_accounting() -> None:
    _, translator = translate(make(), [load("gemini_thoughts_cached.sse")])
    assert translator.usage == ProviderUsage(4112, 61, 4096, 50)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stream_cut_before_its_finish_reason_never_ends_with_done(name: str) -> None:
    blocks = SSEBlockSplitter().feed(load(name))
    for keep in range(len(blocks)):
        if any(b'"finishReason"' in block for block in blocks[:keep]):
            break
        output, translator = translate(make(), [b"".join(blocks[:keep])])
        assert b"[DONE]" not in output
        assert not translator.done


def test_usage_sent_after_the_finish_reason_is_the_one_reported() -> None:
    # Gemini may report usage once more after the candidate that finished.
    trailing = (
        b'data: {"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":30,'
        b'"totalTokenCount":39},"responseId":"bH6LaZW8Fp_3nsEPqtaSwQ4"}\r\n\r\n'
    )
    output, translator = translate(make(), [load("gemini_max_tokens.sse") + trailing])
    c = OpenAIChunks("bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-2.0-flash")
    assert parse(output)[-2:] == [c.usage(9, 30), DONE]
    assert translator.usage == ProviderUsage(9, 30)


def test_a_blocked_prompt_finishes_as_content_filter() -> None:
    event = ServerSentEvent(
        data='{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7,'
        '"totalTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"r1"}'
    )
    translator = make()()
    output = translator.feed(event) + translator.close()
    c = OpenAIChunks("r1", "gemini-2.0-flash")
    assert parse(output) == [c.role(), c.finish("content_filter"), c.usage(7, 0), DONE]
    assert translator.content_started is False


def test_an_event_that_is_not_json_fails_the_stream() -> None:
    translator = make()()
    kind, body = parse(translator.feed(ServerSentEvent(data="{oops")))[0]
    assert kind == "error"
    assert body["error"]["code"] == "invalid_upstream_event"
    assert translator.close() == b""
