"""Mount the aifetch gateway inside a FastAPI (or Starlette) application.

    pip install fastapi
    uvicorn examples.mount_in_fastapi:app --port 8000

The gateway then answers under /ai: point an OpenAI SDK at http://127.0.0.1:8000/ai/v1.
Set AIFETCH_GATEWAY_CONFIG to a config file; without it the built-in mock model
"mock-gpt" is served (offline).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aifetch.gateway import create_app, default_config, load_config

config_path = os.environ.get("AIFETCH_GATEWAY_CONFIG")
gateway = create_app(load_config(config_path) if config_path else default_config())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A mounted app gets no lifespan events of its own: start it (governance: the ledger,
    # the virtual keys) and close it (upstream clients; waiting ledger rows) here.
    await gateway.start()
    yield
    await gateway.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def home() -> dict[str, str]:
    return {"gateway": "/ai/v1"}


app.mount("/ai", gateway)
