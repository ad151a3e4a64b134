"""Why one upstream attempt failed, and what the caller gets if it was the last one."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._codes import ErrorSpec
from ._errors import GatewayError

__all__ = ["Failure"]


@dataclass(slots=True)
class Failure:
    """A failed attempt. ``retryable``: another attempt or target may succeed.
    ``retry_after``: seconds the upstream asked to wait. ``body``: an upstream error answer
    to pass on as it is (with ``headers``) when no attempt succeeds."""

    spec: ErrorSpec
    message: str
    status: int | None = None  # for a spec whose status varies
    retryable: bool = True
    retry_after: float | None = None
    body: bytes | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    param: str | None = None  # the request field at fault, for a refusal

    @property
    def answer_status(self) -> int:
        status = self.status if self.status is not None else self.spec.status
        assert status is not None  # a spec without a status is always given one
        return status

    def error(self) -> GatewayError:
        return self.spec(self.message, status=self.status, param=self.param, headers=self.headers)
