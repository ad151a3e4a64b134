"""What admission reserves for a call, from the request alone (no tokenizer on the hot
path): the body's size for the prompt and ``max_tokens`` for the answer.

About four bytes of English JSON make a token (OpenAI's rule of thumb, "What are
tokens"), and the JSON framing around the messages only adds bytes, so ``bytes / 4``
over-reserves the prompt a little; the real count settles it. The answer reserves the
call's output cap per choice (``max_completion_tokens``, else ``max_tokens``, else the
Responses API's ``max_output_tokens``), or a default when the caller sets none.
"""

from __future__ import annotations

from ._types import Estimate

__all__ = ["BYTES_PER_TOKEN", "estimate_request", "estimate_with"]

BYTES_PER_TOKEN = 4


def estimate_request(
    body_bytes: int,
    max_tokens: int | None,
    n: int | None = None,
    default_output_tokens: int = 1024,
    embeddings: bool = False,
) -> Estimate:
    """The estimate for a request of ``body_bytes`` bytes.

    ``max_tokens``: the request's output cap (``RoutingFields.output_cap``; None when it
    sets none). ``embeddings``: the call produces no output tokens.
    """
    return estimate_with(default_output_tokens, body_bytes, max_tokens, n, embeddings)


def estimate_with(
    default_output_tokens: int,
    body_bytes: int,
    max_tokens: int | None,
    n: int | None = None,
    embeddings: bool = False,
) -> Estimate:
    """``estimate_request`` with the default first: ``functools.partial(estimate_with,
    default)`` is then called with positional arguments only, one Python frame in all (a
    limited call makes one estimate)."""
    prompt = -(-body_bytes // BYTES_PER_TOKEN)  # ceiling division
    if embeddings:
        return Estimate(prompt, 0)
    per_choice = default_output_tokens if max_tokens is None else max_tokens
    return Estimate(prompt, per_choice * (n if n is not None and n > 1 else 1))
