"""An instrumented app for the several-workers tests: every response names its worker's pid."""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI

from instrumentation import get_logger, instrument_app, log_performance, setup_logging

setup_logging()
app = FastAPI()
instrument_app(app)
log = get_logger(__name__)


@app.get("/api/items/{item_id}")
async def item(item_id: str) -> dict[str, object]:
    with log_performance("load_item"):
        await asyncio.sleep(0.002)  # a little work, so requests overlap across workers
    log.info("Item served", item_id=item_id)
    return {"item_id": item_id, "pid": os.getpid()}
