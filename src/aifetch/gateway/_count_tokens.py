"""``POST /v1/messages/count_tokens``: the end of its route, after the gate and the body.

Only Anthropic's API counts a Messages request's tokens, so the request goes, as it came
(the model renamed, the key swapped), to the first of the model's targets on an anthropic
upstream; a model with none gets a clear 404 (``count_tokens_unsupported``). The answer
(``{"input_tokens": n}``) is passed on as Anthropic sent it (``_messages_out`` lets it
through).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import _codes as codes
from ._codes import model_not_found
from ._config import ModelConfig
from ._context import RequestContext
from ._kinds import caller_betas, native_headers
from ._parse import patch_body
from ._passthrough import pass_through
from ._upstream import Upstream

__all__ = ["CountTokens"]

COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


class CountTokens:
    def __init__(self, models: Mapping[str, ModelConfig], upstreams: Mapping[str, Upstream]):
        self.models = models
        self.upstreams = upstreams

    async def __call__(self, ctx: RequestContext) -> None:
        fields = ctx.fields
        assert fields is not None  # ReadBody read them
        model = self.models.get(fields.model)
        if model is None:
            raise model_not_found(fields.model)
        if ctx.caller is not None and not ctx.caller.may_use(fields.model):
            raise codes.MODEL_NOT_ALLOWED(
                f"This key may not use the model '{fields.model}'.", param="model"
            )
        for target in model.targets:
            upstream = self.upstreams[target.upstream]
            if upstream.kind == "anthropic":
                break
        else:
            raise codes.COUNT_TOKENS_UNSUPPORTED(
                f"The model '{fields.model}' has no anthropic upstream, and only Anthropic's "
                "API counts the tokens of a Messages request.",
            )
        body = patch_body(ctx.body, fields, target.model or fields.model, False)
        betas = ",".join([*model.anthropic_beta, caller_betas(ctx.headers)]).strip(",")
        ctx.wire = "anthropic"  # the answer is Anthropic's own
        url = upstream.base + COUNT_TOKENS_PATH
        await pass_through(ctx, upstream, "POST", url, body, native_headers(upstream, betas))
