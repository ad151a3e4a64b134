"""The official openai package as a real client of the gateway, in front of the fake."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from aifetch.gateway import GatewayConfig
from tests.support.fake_upstream import FakeUpstream, chat_stream, status_storm

from .conftest import RunningGateway, config_for


def client(gateway: RunningGateway, key: str = "unused", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=retries, timeout=10)


def test_chat_completion_non_stream(gateway: RunningGateway, fake: FakeUpstream) -> None:
    with client(gateway) as oa:
        result = oa.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}]
        )
    assert result.choices[0].message.content == "Hello from fake-model"
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json()["model"] == "fake-model"  # the target's upstream name
    assert sent.header("authorization") == "Bearer sk-upstream-secret-1234"


def test_chat_completion_stream(gateway: RunningGateway, fake: FakeUpstream) -> None:
    with client(gateway) as oa:
        stream = oa.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from fake-model"
    # The gateway asked the upstream for usage although the caller did not.
    assert fake.requests[-1].json()["stream_options"] == {"include_usage": True}


def test_stream_with_usage_requested_keeps_usage_chunk(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        stream = oa.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_tool_calls_stream(gateway: RunningGateway, fake: FakeUpstream) -> None:
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    fake.enqueue(chat_stream(content="", tool_calls=[call]))
    with client(gateway) as oa:
        stream = oa.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "weather?"}], stream=True
        )
        args = ""
        names = []
        for chunk in stream:
            for choice in chunk.choices:
                for tc in choice.delta.tool_calls or []:
                    if tc.function and tc.function.name:
                        names.append(tc.function.name)
                    if tc.function and tc.function.arguments:
                        args += tc.function.arguments
    assert names == ["get_weather"]
    assert args == '{"city": "Paris"}'


def test_legacy_completions(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        result = oa.completions.create(model="gpt", prompt="Say hi")
    assert result.choices[0].text == "Hello from fake-model"


def test_embeddings(gateway: RunningGateway, fake: FakeUpstream) -> None:
    with client(gateway) as oa:
        result = oa.embeddings.create(model="gpt", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert fake.requests[-1].path == "/v1/embeddings"


def test_models_lists_public_names(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        ids = sorted(m.id for m in oa.models.list())
    assert ids == ["gpt", "mock-gpt"]


def test_mock_model_streams_offline(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        stream = oa.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Hello from the aifetch mock provider")


def test_unknown_model_is_not_found(gateway: RunningGateway) -> None:
    with client(gateway) as oa, pytest.raises(openai.NotFoundError) as info:
        oa.chat.completions.create(model="nope", messages=[])
    assert info.value.code == "model_not_found"


def test_upstream_429_surfaces_as_rate_limit_error(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    fake.enqueue(status_storm(429, retry_after="7"))
    with client(gateway) as oa, pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model="gpt", messages=[])
    assert info.value.response.headers["retry-after"] == "7"


@pytest.fixture
def keyed(fake: FakeUpstream, serve: Callable[[GatewayConfig], RunningGateway]) -> RunningGateway:
    callers = [
        {"name": "alice", "key": "gw-alice-key"},
        {"name": "bob", "key": "gw-bob-key", "models": ["mock-gpt"]},
    ]
    return serve(config_for(fake.url, callers=callers))


def test_missing_and_wrong_keys_are_authentication_errors(keyed: RunningGateway) -> None:
    with client(keyed, key="wrong") as oa, pytest.raises(openai.AuthenticationError) as info:
        oa.chat.completions.create(model="gpt", messages=[])
    assert info.value.code == "invalid_api_key"
    missing = httpx.post(keyed.url + "/v1/chat/completions", json={"model": "gpt", "messages": []})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    by_header = httpx.post(
        keyed.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": []},
        headers={"api-key": "gw-alice-key"},
    )
    assert by_header.status_code == 200


def test_right_key_is_served_and_model_permissions_apply(keyed: RunningGateway) -> None:
    with client(keyed, key="gw-alice-key") as oa:
        assert oa.chat.completions.create(model="gpt", messages=[]).choices
    with client(keyed, key="gw-bob-key") as oa:
        assert [m.id for m in oa.models.list()] == ["mock-gpt"]
        with pytest.raises(openai.PermissionDeniedError):
            oa.chat.completions.create(model="gpt", messages=[])


def test_legacy_completions_stream(gateway: RunningGateway) -> None:
    with client(gateway) as oa:
        stream = oa.completions.create(model="gpt", prompt="Say hi", stream=True)
        text = "".join(c.choices[0].text for c in stream if c.choices)
    assert text == "Hello from fake-model"
