"""``aifetch.fetch()``: one request, no client to manage, like the browser's fetch()."""

from __future__ import annotations

from typing import Any

from ._async._client import AsyncClient
from ._async._response import AsyncResponse, BodySource
from ._request import Request

__all__ = ["fetch"]


class _ClosingSource:
    """Closes the one-shot client once its only response is done with."""

    __slots__ = ("_client", "_source")

    def __init__(self, source: BodySource, client: AsyncClient) -> None:
        self._source = source
        self._client: AsyncClient | None = client

    @property
    def done(self) -> bool:
        return self._client is None

    async def read(self) -> bytes:
        chunk = await self._source.read()
        if not chunk:
            await self.aclose()
        return chunk

    async def aclose(self) -> None:
        await self._source.aclose()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def fetch(resource: str | Request, **options: Any) -> AsyncResponse:
    """Send one request with a client of its own, closed when the response is.

    Takes the options of ``AsyncClient.fetch``. For more than a few calls, keep an
    ``AsyncClient``: it pools connections and folds its pipes once.
    """
    client = AsyncClient()
    try:
        response = await client.fetch(resource, **options)
    except BaseException:
        await client.aclose()
        raise
    response._source = _ClosingSource(response._source, client)
    return response
