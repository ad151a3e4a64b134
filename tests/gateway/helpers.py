"""Raw HTTP helpers for the gateway tests."""

from __future__ import annotations

from typing import Any

import httpx

CHAT = "/v1/chat/completions"


def post_raw(
    url: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    path: str = CHAT,
    timeout: float = 10,
) -> tuple[int, httpx.Headers, bytes]:
    """POST ``body`` and read the whole response body raw (as the gateway framed it)."""
    with httpx.stream("POST", url + path, json=body, headers=headers, timeout=timeout) as response:
        data = b"".join(response.iter_raw())
        return response.status_code, response.headers, data


def chat(model: str = "gpt", *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        **extra,
    }
