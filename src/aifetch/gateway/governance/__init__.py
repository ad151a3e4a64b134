"""Governance: virtual keys, limits and budgets, shared state, and the usage ledger.

One ``Governor`` per app, built from the gateway config. The request path calls it from
a few places (docs/ARCHITECTURE.md, "The gateway's request path")::

    governor = Governor(config)                 # GatewayApp.__init__
    app.metrics.registry.register(governor.metrics)
    await governor.start()                       # app.start(): the ASGI lifespan's startup

    # the gate (_auth.py): config callers first (Authenticator), then virtual keys
    who = governor.caller(caller.name)           # Identity | None, for a config caller
    who = governor.identify(key_bytes)           # Identity | None, for a virtual key

    # the limits stage (_limits.py), after the body is read, before any upstream
    estimate = governor.estimate(len(raw_body), fields.max_completion_tokens
                                 or fields.max_tokens, fields.n, route == "/v1/embeddings")
    admission = governor.admit_now(who, model, estimate, stream)   # memory: decided now
    if admission is None:                                          # Redis: one script call
        admission = await governor.admit(who, model, estimate, stream)
    # both raise the 429 (or 503) GatewayError; admission.headers: x-ratelimit-* to send

    # the ASGI edge (_app.py), in a finally, once the call is over
    governor.settle(admission, usage)            # Usage | None; never waits; exactly once
    governor.record(LedgerRow(..., cost_nano_usd=governor.cost(model, usage)))  # never waits

    await governor.aclose()                      # app.aclose(): flushes settlements and rows

    # the admin routes (_admin_route.py), when governor.admin is not None:
    governor.admin.authorize(headers)            # before any body byte is read
    status, headers, body = await governor.admin.handle(method, path, headers, body)

``governor.enabled`` is False when nothing is configured (no limits, keys or ledger):
the gateway then leaves governance out of the path. ``governor.needs_start``: whether the
app starts and closes it (governance on, or ``state: redis://...``, whose connection the
response ids share: ``_response_ids_redis``). ``admit`` costs at most one Redis
script call, over the state store's own client (``_redis_client``); ``settle`` and
``record`` only append to buffers. ``check_workers(config, workers)`` refuses
``--workers > 1`` with memory state and limits configured.
"""

from __future__ import annotations

from ._admin import AdminApi
from ._config import (
    AdminConfig,
    BudgetConfig,
    GovernanceConfig,
    KeysConfig,
    LimitConfig,
    PriceConfig,
    check_workers,
    governance_active,
)
from ._errors import (
    GovernanceError,
    KeyStoreError,
    MissingPackageError,
    SchemaError,
    StateUnavailable,
)
from ._governor import UNLIMITED, Governor
from ._plan import Admission
from ._types import Estimate, Identity, LedgerRow, Limits, Usage

__all__ = [
    "UNLIMITED",
    "AdminApi",
    "AdminConfig",
    "Admission",
    "BudgetConfig",
    "Estimate",
    "GovernanceConfig",
    "GovernanceError",
    "Governor",
    "Identity",
    "KeyStoreError",
    "KeysConfig",
    "LedgerRow",
    "LimitConfig",
    "Limits",
    "MissingPackageError",
    "PriceConfig",
    "SchemaError",
    "StateUnavailable",
    "Usage",
    "check_workers",
    "governance_active",
]
