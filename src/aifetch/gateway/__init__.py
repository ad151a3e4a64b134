"""An OpenAI-compatible streaming gateway: a plain ASGI app, also run by ``aifetch serve``.

    from aifetch.gateway import create_app, load_config
    app = create_app(load_config("gateway.yaml"))   # mount it, or serve it with uvicorn

See docs/GATEWAY.md for the config reference and gateway pipes.
"""

from __future__ import annotations

from ._app import GatewayApp, create_app
from ._call import Call, EventHook, Next, Pipe, Reply
from ._config import ConfigError, GatewayConfig, default_config, load_config, parse_config
from ._errors import GatewayError
from ._pipes import log_calls, request_policy

__all__ = [
    "Call",
    "ConfigError",
    "EventHook",
    "GatewayApp",
    "GatewayConfig",
    "GatewayError",
    "Next",
    "Pipe",
    "Reply",
    "create_app",
    "default_config",
    "load_config",
    "log_calls",
    "parse_config",
    "request_policy",
]
