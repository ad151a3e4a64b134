"""Response ids shared through Redis (``state: redis://...``): a response made through one
worker or instance is found, pinned and owner-checked through any other
(``.._response_ids``).

- An id is written (``SET ... EX ttl``) before its answer's first bytes reach the caller,
  who may come back through another process at once; it lives ``response_ids_ttl``
  seconds (``governance.response_ids_ttl``).
- It is read from Redis only when this process does not know it, then remembered here.
- The state store's own client and health carry these calls (``_state_redis``): with
  Redis away an id is kept and found in this process only, and a lookup this process
  cannot answer is a 503 with ``on_state_error: closed`` (as an admission is), else
  answered from what this process knows.

Key: ``<prefix>response:<id>`` → ``[upstream, caller, model]`` as JSON.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from .. import _codes as codes
from .._response_ids import Made, ResponseIds
from ._redis_client import encode
from ._state_redis import RedisError, RedisState

__all__ = ["SharedResponseIds"]

_made = msgspec.json.Decoder(tuple[str, str | None, str | None])


class SharedResponseIds(ResponseIds):
    """``ResponseIds`` in front of Redis."""

    def __init__(
        self,
        state: RedisState,
        *,
        prefix: str,
        ttl: int,
        upstreams: Collection[str],
        closed: bool,
    ) -> None:
        super().__init__()
        self.state = state
        self._prefix = prefix + "response:"
        self._ttl = ttl
        # Another deployment on the same prefix may name upstreams this one lacks.
        self._upstreams = frozenset(upstreams)
        self._closed = closed

    async def find(self, response_id: str) -> Made | None:
        made = self.get(response_id)
        if made is not None:
            return made
        reply = await self._call(encode(b"GET", self._prefix + response_id), lookup=True)
        if not isinstance(reply, bytes):
            return None
        try:
            upstream, caller, model = _made.decode(reply)
        except msgspec.DecodeError:
            return None
        if upstream not in self._upstreams:
            return None
        made = Made(upstream, caller, model)
        self.note(response_id, made)
        return made

    async def keep(self, response_id: str, made: Made) -> None:
        self.note(response_id, made)
        value = msgspec.json.encode(tuple(made))
        await self._call(encode(b"SET", self._prefix + response_id, value, b"EX", self._ttl))

    async def drop(self, response_id: str) -> None:
        self.forget(response_id)
        await self._call(encode(b"DEL", self._prefix + response_id))

    async def _call(self, command: bytes, *, lookup: bool = False) -> object:
        """The command's reply; ``None`` when Redis is away (or, for a lookup with
        ``on_state_error: closed``, the 503)."""
        state = self.state
        if state.available:
            try:
                return await state.client.call(command)
            except RedisError as exc:
                state.mark_down(exc)
        if lookup and self._closed:
            raise codes.STATE_UNAVAILABLE(
                "The gateway cannot reach its shared state to find this response; "
                "try again shortly.",
                headers=[("retry-after", "1")],
            )
        return None
