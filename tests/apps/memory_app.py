"""An instrumented app that hands client-controlled strings to corrstack, for the memory floods.

Each route does what a real handler may do with a request: log the JSON body's keys as fields,
or charge an API cost to a user id taken from the body. `LOG_FILE` names the JSON log file.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from instrumentation import business_events, get_logger, instrument_app, setup_logging

setup_logging(service="memory", log_file=os.environ["LOG_FILE"])
app = FastAPI()
instrument_app(app)
log = get_logger(__name__)


@app.get("/ok")
async def ok() -> dict[str, bool]:
    log.info("ok")
    return {"ok": True}


@app.post("/body")
async def body_as_fields(request: Request) -> dict[str, int]:
    body: dict[str, Any] = await request.json()
    log.info("body", **body)
    return {"fields": len(body)}


@app.post("/api/user/{user_id}/cost")
async def cost(user_id: str, request: Request) -> dict[str, float]:
    body: dict[str, Any] = await request.json()
    total = business_events.api_cost_tracked("analyze", "m", 0.001, user_id=body["user_id"])
    return {"daily_cost_usd": total}
