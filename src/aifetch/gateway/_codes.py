"""Every error code the gateway itself answers with, in one table.

A code is raised by calling its entry: ``raise MODEL_NOT_FOUND(f"The model '{m}' ...",
param="model")``. The entry fixes the status and the OpenAI ``type``; the message says
what happened this time. ``docs/GATEWAY.md``'s error table lists every entry (a test
checks it), so a new code is a new row here and there, never a literal at a raise site.

Upstream errors passed on unchanged keep the upstream's own status and code; they are not
in this table.
"""

from __future__ import annotations

from typing import NamedTuple

from ._errors import GatewayError

__all__ = ["REGISTRY", "ErrorSpec", "model_not_found"]


class ErrorSpec(NamedTuple):
    """One error code: its status (``None``: given at the raise site), OpenAI ``type``,
    and when it happens (for the docs)."""

    code: str | None
    status: int | None
    type: str | None
    when: str

    def __call__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> GatewayError:
        """The error to raise (``status`` only for entries whose status varies)."""
        given = self.status if self.status is not None else status
        if given is None:
            raise TypeError(f"error code {self.code!r} needs a status")
        return GatewayError(
            given, message, type=self.type, param=param, code=self.code, headers=headers
        )


def _spec(code: str | None, status: int | None, when: str, type: str | None = None) -> ErrorSpec:
    return ErrorSpec(code, status, type, when)


# ---------------------------------------------------------------- the caller's request

INVALID_JSON = _spec("invalid_json", 400, "the body is not a JSON object")
INVALID_ENCODING = _spec("invalid_encoding", 400, "the body is not UTF-8")
MISSING_PARAMETER = _spec("missing_required_parameter", 400, "a required field is missing")
# OpenAI answers a field of the wrong type with no code, only ``param``; so does the gateway.
INVALID_FIELD = _spec(None, 400, "a routing field has the wrong type or is out of range")
MISSING_API_KEY = _spec("missing_api_key", 401, "no gateway key was sent")
INVALID_API_KEY = _spec("invalid_api_key", 401, "the gateway key is not one of the callers'")
MODEL_NOT_ALLOWED = _spec("model_not_allowed", 403, "the caller's key may not use this model")
METRICS_FORBIDDEN = _spec(
    "metrics_forbidden",
    403,
    "/metrics without server.metrics_key, from another machine or through a proxy",
)
LOOPBACK_ONLY = _spec(
    "loopback_only", 403, "no callers are configured and the client is not on this machine"
)
MODEL_NOT_FOUND = _spec("model_not_found", 404, "the model is not configured")


def model_not_found(model: str) -> GatewayError:
    """The 404 for a name that is not configured (the caller's, or one a pipe mapped to),
    worded as OpenAI words it."""
    return MODEL_NOT_FOUND(
        f"The model '{model}' does not exist or you do not have access to it.", param="model"
    )


UNKNOWN_URL = _spec("unknown_url", 404, "no route has this path")
METHOD_NOT_ALLOWED = _spec("method_not_allowed", 405, "the route exists, not with this method")
REQUEST_TIMEOUT = _spec(
    "request_timeout", 408, "the request was not complete within limits.request_timeout"
)
REQUEST_TOO_LARGE = _spec("request_too_large", 413, "the body is over limits.max_body_bytes")
HEADER_TOO_LARGE = _spec(
    "request_header_too_large", 431, "the request line and headers are over 64 KiB"
)
# Logged as 499 (nginx's "client closed request"); a caller that is gone gets no answer.
CLIENT_CLOSED = _spec("client_closed", 499, "the caller went away before the answer")

# ---------------------------------------------------------------- dialects (docs/DIALECTS.md)

# A request an upstream kind cannot take as it is, refused before it is sent (the next
# target is tried): ``param`` names the field. Also a /v1/messages request that has no
# OpenAI equivalent.
UNSUPPORTED_PARAMETER = _spec(
    "unsupported_parameter",
    400,
    "a field an anthropic or gemini upstream has no equivalent for (`param` names it)",
)
UNSUPPORTED_VALUE = _spec(
    "unsupported_value",
    400,
    "a value an anthropic or gemini upstream cannot take, or a /v1/messages block or tool "
    "with no OpenAI equivalent (`param` names the field)",
)
INVALID_VALUE = _spec(
    "invalid_value", 400, "a field's value cannot be translated (`param` names the field)"
)
ROUTE_NOT_SUPPORTED = _spec(
    "route_not_supported",
    400,
    "the model's upstreams do not serve the route: the Responses API on an anthropic, "
    "gemini or mock upstream; completions or embeddings on an anthropic or gemini one",
)
PREVIOUS_RESPONSE_NOT_FOUND = _spec(
    "previous_response_not_found",
    400,
    "`previous_response_id` names a response another caller made through the gateway, or "
    "(with several callers) one the gateway does not know",
)
RESPONSE_NOT_FOUND = _spec(
    "response_not_found",
    404,
    "GET, DELETE or cancel of a response this gateway did not make for this caller (or no "
    "longer remembers)",
)
COUNT_TOKENS_UNSUPPORTED = _spec(
    "count_tokens_unsupported",
    404,
    "/v1/messages/count_tokens for a model with no target on an anthropic upstream",
)

# ---------------------------------------------------------------- limits and budgets

RATE_LIMITED_REQUESTS = _spec(
    "rate_limit_exceeded", 429, "over a caller's rpm or max_streams", type="requests"
)
RATE_LIMITED_TOKENS = _spec("rate_limit_exceeded", 429, "over a caller's tpm", type="tokens")
INSUFFICIENT_QUOTA = _spec(
    "insufficient_quota",
    429,
    "the caller's budget for the day or month is spent",
    type="insufficient_quota",
)
STATE_UNAVAILABLE = _spec(
    "state_unavailable",
    503,
    "the shared state store (Redis) is unreachable and on_state_error is closed",
    type="server_error",
)
# The admin API (/admin/keys).
INVALID_KEY_REQUEST = _spec("invalid_key_request", 400, "admin API: a key request is invalid")
KEY_NOT_FOUND = _spec("key_not_found", 404, "admin API: no active key has this name")
KEY_EXISTS = _spec("key_exists", 409, "admin API: an active key has this name already")

# ---------------------------------------------------------------- the gateway

INTERNAL = _spec("internal_error", 500, "a bug in the gateway or in a pipe (details in the log)")
PIPE_ERROR = _spec(
    "pipe_error",
    500,
    "a gateway pipe broke a rule (a stream for a non-stream call, a call to no route)",
)
SHUTTING_DOWN = _spec("shutting_down", 503, "the gateway is shutting down")
TOO_MANY_CONNECTIONS = _spec(
    "too_many_connections",
    503,
    "limits.max_connections are open and every one has a request in progress (the "
    "connection is then closed)",
)
SERVER_BUSY = _spec(
    "server_busy", 503, "the request bodies held at once reached limits.max_buffered_body_bytes"
)

# ---------------------------------------------------------------- the upstreams

UPSTREAM_STATUS = _spec(
    "upstream_status",
    None,
    "an upstream error status that could not be passed on as it was (after a heartbeat "
    "committed the stream, it travels in an error event)",
)
UPSTREAM_UNREACHABLE = _spec("upstream_unreachable", 502, "no upstream target could be reached")
UPSTREAM_RESET = _spec("upstream_reset", 502, "an upstream broke the connection")
UPSTREAM_REDIRECT = _spec("upstream_redirect", 502, "an upstream answered with a redirect")
UPSTREAM_BAD_STATUS = _spec("upstream_bad_status", 502, "an upstream answered 1xx or 3xx")
UPSTREAM_AUTH_FAILED = _spec(
    "upstream_auth_failed", 502, "an upstream rejected the gateway's own key (401/403)"
)
UPSTREAM_TOO_LARGE = _spec("upstream_too_large", 502, "an upstream body was over 64 MiB")
UPSTREAM_INVALID_BODY = _spec(
    "upstream_invalid_body",
    502,
    "an anthropic or gemini upstream answered 2xx with a body that is not its documented shape",
)
UPSTREAM_ERROR_EVENT = _spec("upstream_error_event", 502, "an upstream stream sent an error event")
UPSTREAM_NO_CONTENT = _spec(
    "upstream_no_content", 502, "an upstream stream sent 1 MiB without a content event"
)
UPSTREAM_EMPTY = _spec("upstream_empty", 502, "an upstream stream ended before any content")
UPSTREAM_INCOMPLETE = _spec(
    "upstream_incomplete", 502, "an upstream stream ended without its final data: [DONE]"
)
UPSTREAM_BUSY = _spec(
    "upstream_busy",
    503,
    "no connection to an upstream came free within timeout.pool (its connections, or the "
    "caller's share of them, are all in use)",
)
UPSTREAM_TIMEOUT = _spec("upstream_timeout", 504, "an upstream timed out (the phase is named)")

REGISTRY: tuple[ErrorSpec, ...] = tuple(
    value for value in globals().values() if isinstance(value, ErrorSpec)
)
