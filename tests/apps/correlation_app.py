"""An instrumented app for the integration tests, configured from the environment."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from instrumentation import (
    current_context,
    error_tracker,
    get_logger,
    instrument_app,
    log_performance,
    setup_logging,
)

setup_logging()
app = FastAPI()
instrument_app(app)
log = get_logger(__name__)
plain = logging.getLogger("tests.plain")


@app.get("/api/user/{user_id}/echo")
async def echo(user_id: str) -> dict[str, str]:
    log.info("Handler started", step=1)
    await asyncio.sleep(0.001)
    plain.info("Plain stdlib line")
    with log_performance("echo_work"):
        await asyncio.sleep(0)
    return {"user_id": user_id, "request_id": current_context()["request_id"]}


@app.get("/sync/user/{user_id}")
def sync_echo(user_id: str) -> dict[str, str]:
    plain.info("Sync handler line")
    return {"user_id": user_id, "request_id": current_context()["request_id"]}


@app.post("/api/user/{user_id}/fail")
async def tracked_failure(user_id: str, operation: str = "generate_routine") -> dict[str, bool]:
    alerted = error_tracker.track(TimeoutError("model timed out"), operation, severity="critical")
    return {"alerted": alerted}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("unhandled failure")
