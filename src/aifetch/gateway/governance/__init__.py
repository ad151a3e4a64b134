"""Governance: virtual keys, limits and budgets, shared state, and the usage ledger.

One ``Governor`` per app, built from the gateway config; the request path calls it in
this order (a stage "limits" after auth, and a stage "ledger" when the call is over)::

    governor = Governor(config)
    await governor.start()                       # app start-up (lifespan)
    app.metrics.registry.register(governor.metrics)

    # auth: config callers first (Authenticator), then virtual keys
    who = governor.caller(caller.name)           # Identity | None, for a config caller
    who = governor.identify(key_bytes)           # Identity | None, for a virtual key
    if not who.may_use(model): ...               # 403 model_not_allowed, as today

    # limits: before any upstream is called
    estimate = governor.estimate(len(raw_body), fields.max_completion_tokens
                                 or fields.max_tokens, fields.n,
                                 embeddings=route == "/v1/embeddings")
    admission = await governor.admit(who, model, estimate, stream)   # raises GatewayError 429/503
    response_headers += admission.headers        # x-ratelimit-* on the answer

    # when the call is over (answer sent, stream ended or cut, upstream failed)
    governor.settle(admission, usage)            # Usage | None; never waits; exactly once
    governor.record(LedgerRow(..., cost_nano_usd=governor.cost(model, usage)))  # never waits

    await governor.aclose()                      # shutdown: flushes settlements and rows

    # admin routes, when governor.admin is not None:
    status, headers, body = await governor.admin.handle(method, path, headers, body)

``governor.enabled`` is False when nothing is configured (no limits, keys or ledger):
the gateway may then leave both stages out. ``admit`` costs at most one Redis script
call; ``settle`` and ``record`` only append to buffers. ``check_workers(config, workers)``
refuses ``--workers > 1`` with memory state and limits configured.

Where it plugs into the request path (docs/ARCHITECTURE.md, "The request path"):

- ``GatewayApp.__init__`` makes the governor and registers ``governor.metrics``; the
  lifespan startup awaits ``start()``, ``aclose()`` awaits ``governor.aclose()``; when
  ``governor.admin`` is set, ``/admin/keys`` and ``/admin/keys/<name>`` route to it.
- ``Gate``: a key the ``Authenticator`` does not know goes to ``governor.identify``; the
  request's identity (``governor.caller(name)`` for config callers) rides on the context.
- ``ModelCall``, right after the ``model_not_allowed`` check: ``estimate`` + ``admit``;
  ``ctx.answer_headers = [*ctx.answer_headers, *admission.headers]`` (a new list: CORS's
  may be shared between requests).
- When ``ModelCall`` (or the ``StreamCall`` it hands to) is done, in a ``finally``:
  ``settle`` with the usage seen (``Usage()`` when no upstream answered, ``None`` when a
  stream ended before its usage chunk) and ``record`` a row from the context (status,
  error code, upstream, stream, ttft, duration). The usage parser reads prompt and
  completion tokens today; the ledger also wants ``prompt_tokens_details.cached_tokens``
  and ``completion_tokens_details.reasoning_tokens``.
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
