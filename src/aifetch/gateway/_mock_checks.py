"""What the built-in mock refuses, checked as OpenAI checks it (sans-IO: a decoded body in,
an error or ``None`` out).

Code tried against ``aifetch serve``'s default model must fail the way it will against a
real provider: a chat request without ``messages`` is a 400 there, so it is one here. The
codes and the wording follow OpenAI's answers (API reference, "Error codes"; the messages
quoted below are what the API returns):

- a required field left out: ``missing_required_parameter``,
  "Missing required parameter: 'messages'." (``param`` the path of the field);
- a field of the wrong JSON type: ``invalid_type``,
  "Invalid type for 'messages': expected an array of objects, but got a string instead.";
- an empty ``messages`` array: ``empty_array``;
- a ``role`` outside the known ones: ``invalid_value``,
  "Invalid value: 'robot'. Supported values are: 'system', ... and 'developer'.".

Only the first problem is reported, as OpenAI does. Fields the gateway checks itself
(``model``, ``stream``, ``max_tokens``, ``n``) are not checked again.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MockRefusal", "check_request"]

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
# Roles whose message may leave ``content`` out (an assistant's tool or function call).
_CONTENT_OPTIONAL = frozenset({"assistant"})
_TEXT_OR_TOKENS = (
    "one of a string, array of strings, array of integers, or array of arrays of integers"
)


class MockRefusal:
    """A 400 as OpenAI words it; ``param`` is the path of the field at fault."""

    __slots__ = ("code", "message", "param")

    def __init__(self, message: str, param: str | None, code: str) -> None:
        self.message, self.param, self.code = message, param, code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


def check_request(path: str, body: dict[str, Any]) -> MockRefusal | None:
    """The first problem OpenAI would refuse in ``body`` sent to ``path``, or ``None``."""
    if path.endswith("/chat/completions"):
        return _check_messages(body)
    if path.endswith("/completions"):
        return _check_text_or_tokens(body, "prompt")
    if path.endswith("/embeddings"):
        return _check_text_or_tokens(body, "input")
    return None


def _missing(param: str) -> MockRefusal:
    return MockRefusal(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, value: Any) -> MockRefusal:
    return MockRefusal(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param,
        "invalid_type",
    )


def _empty_array(param: str) -> MockRefusal:
    return MockRefusal(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        param,
        "empty_array",
    )


def _kind(value: Any) -> str:
    """A JSON value's type as OpenAI's messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_messages(body: dict[str, Any]) -> MockRefusal | None:
    if "messages" not in body:
        return _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        return _wrong_type("messages", "an array of objects", messages)
    if not messages:
        return _empty_array("messages")
    for i, message in enumerate(messages):
        refusal = _check_message(f"messages[{i}]", message)
        if refusal is not None:
            return refusal
    return None


def _check_message(where: str, message: Any) -> MockRefusal | None:
    if not isinstance(message, dict):
        return _wrong_type(where, "an object", message)
    if "role" not in message:
        return _missing(f"{where}.role")
    role = message["role"]
    if not isinstance(role, str):
        return _wrong_type(f"{where}.role", "a string", role)
    if role not in _ROLES:
        supported = ", ".join(f"'{r}'" for r in _ROLES[:-1]) + f", and '{_ROLES[-1]}'"
        return MockRefusal(
            f"Invalid value: '{role}'. Supported values are: {supported}.",
            f"{where}.role",
            "invalid_value",
        )
    if "content" not in message:
        return None if role in _CONTENT_OPTIONAL else _missing(f"{where}.content")
    content = message["content"]
    if isinstance(content, str) or (isinstance(content, list) and _all_objects(content)):
        return None
    if content is None and role in _CONTENT_OPTIONAL:
        return None
    return _wrong_type(f"{where}.content", "one of a string or array of objects", content)


def _all_objects(items: list[Any]) -> bool:
    return all(isinstance(item, dict) for item in items)


def _check_text_or_tokens(body: dict[str, Any], name: str) -> MockRefusal | None:
    """``prompt`` (completions) and ``input`` (embeddings) take the same four shapes."""
    if name not in body:
        return _missing(name)
    value = body[name]
    if isinstance(value, list) and not value:
        return _empty_array(name)
    if not _is_text_or_tokens(value):
        return _wrong_type(name, _TEXT_OR_TOKENS, value)
    return None


def _is_text_or_tokens(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list):
        return False
    if all(isinstance(v, str) for v in value) or all(_is_token(v) for v in value):
        return True
    return all(isinstance(v, list) and v and all(_is_token(t) for t in v) for v in value)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
