"""An instrumented app that leaves logging to the server: `instrument_app()`, no setup_logging().

Started with `--log-config` (or gunicorn's `logconfig_dict`) it logs through that config;
without one, `instrument_app()` runs setup_logging() itself.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from instrumentation import current_context, get_logger, instrument_app

app = FastAPI()
instrument_app(app)
log = get_logger(__name__)
plain = logging.getLogger("tests.plain")


@app.get("/api/user/{user_id}/echo")
async def echo(user_id: str) -> dict[str, str]:
    log.info("Handler started", step=1)
    plain.info("Plain stdlib line")
    return {"user_id": user_id, "request_id": current_context()["request_id"]}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("unhandled failure")
