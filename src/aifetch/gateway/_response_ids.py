"""Where each response was made: its id → the upstream that made it, for which caller.

``/v1/responses`` answers carry an id the caller may come back with (``previous_response_id``,
``GET /v1/responses/{id}``); only the upstream that made the response has it, and only its
caller may reach it (``_responses``). Two stores, one interface (``find``, ``keep``,
``drop``):

* ``ResponseIds``: this process's memory, the last ``MAX_IDS`` ids (least recently used
  out first). With ``state: memory``.
* ``SharedResponseIds`` (``governance._response_ids_redis``): the same memory in front
  of Redis (``state: redis://...``), so a response made through one worker or instance
  is found through any other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .governance import Governor

__all__ = ["MAX_IDS", "Made", "ResponseIds", "response_ids_for"]

# Response ids remembered per process (an id, its upstream and caller: ~200 bytes each).
MAX_IDS = 65536


class Made(NamedTuple):
    upstream: str
    caller: str | None  # whose the response is (_responses.owner_of)
    model: str | None


class ResponseIds:
    """Response id → where it was made, in this process; the least recently used goes
    first when full."""

    def __init__(self, limit: int = MAX_IDS) -> None:
        self.limit = limit
        self._made: OrderedDict[str, Made] = OrderedDict()

    def __len__(self) -> int:
        return len(self._made)

    def note(self, response_id: str, made: Made) -> None:
        self._made[response_id] = made
        self._made.move_to_end(response_id)
        if len(self._made) > self.limit:
            self._made.popitem(last=False)

    def get(self, response_id: str) -> Made | None:
        made = self._made.get(response_id)
        if made is not None:
            self._made.move_to_end(response_id)
        return made

    def forget(self, response_id: str) -> None:
        self._made.pop(response_id, None)

    # The store's interface, as the stages use it.

    async def find(self, response_id: str) -> Made | None:
        return self.get(response_id)

    async def keep(self, response_id: str, made: Made) -> None:
        self.note(response_id, made)

    async def drop(self, response_id: str) -> None:
        self.forget(response_id)


def response_ids_for(governor: Governor, upstreams: Collection[str]) -> ResponseIds:
    """The store for this app: shared through Redis with ``state: redis://...``."""
    shared = governor.shared
    if shared is None:
        return ResponseIds()
    from .governance._response_ids_redis import SharedResponseIds

    tuning = governor.tuning
    return SharedResponseIds(
        shared,
        prefix=tuning.prefix,
        ttl=tuning.response_ids_ttl,
        upstreams=upstreams,
        closed=governor.closed_on_state_error,
    )
