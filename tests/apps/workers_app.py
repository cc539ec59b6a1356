"""An instrumented app for the several-workers tests: every response names its worker's pid.

`?delay_ms=N` (0-10000) makes a request last N ms longer, so a test can put it in a latency
bucket of its choice or keep it in flight.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, Query

from instrumentation import get_logger, instrument_app, log_performance, setup_logging

setup_logging()
app = FastAPI()
instrument_app(app)
log = get_logger(__name__)


@app.get("/api/items/{item_id}")
async def item(item_id: str, delay_ms: int = Query(0, ge=0, le=10_000)) -> dict[str, object]:
    with log_performance("load_item"):
        await asyncio.sleep(0.002 + delay_ms / 1000)  # a little work, so requests overlap
    log.info("Item served", item_id=item_id)
    return {"item_id": item_id, "pid": os.getpid()}
