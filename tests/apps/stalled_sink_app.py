"""An instrumented app for the buffered-sink tests: its stdout stalls, or it is stopped by
SIGTERM right after a burst of lines."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from instrumentation import instrument_app, setup_logging

SHUTDOWN_LINES = 200
log = logging.getLogger("tests.stalled")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    for i in range(SHUTDOWN_LINES):  # still buffered when uvicorn ends the process
        log.info("Shutdown line", extra={"i": i})


setup_logging(service="stalled", log_file=os.environ["LOG_FILE"])
app = FastAPI(lifespan=lifespan)
instrument_app(app)


@app.get("/api/item/{item_id}")
async def item(item_id: str) -> dict[str, str]:
    log.info("Item served", extra={"item_id": item_id})
    return {"item_id": item_id}
