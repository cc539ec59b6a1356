"""An instrumented app whose traffic fills every service-overview panel.

Served by a real uvicorn in tests/test_dashboards.py. Routes take a `{user_id}` path parameter
(so `route` is a template and user_id reaches the access line), some fail with 500, and the
handlers use business_events, error_tracker and log_performance when the instrumentation
package has them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import FastAPI, HTTPException

import instrumentation
from instrumentation import get_logger, instrument_app

app = FastAPI()
instrument_app(app)
log = get_logger(__name__)


@contextlib.contextmanager
def _timed(operation: str) -> Iterator[None]:
    if hasattr(instrumentation, "log_performance"):
        with instrumentation.log_performance(operation):
            yield
    else:
        yield


@app.get("/api/user/{user_id}/routine")
async def routine(user_id: str) -> dict[str, int]:
    with _timed("generate_routine"):
        log.info("Routine generated", exercises_count=8)
    if hasattr(instrumentation, "business_events"):
        instrumentation.business_events.routine_generated(exercises_count=8)
    return {"exercises": 8}


@app.post("/api/user/{user_id}/analysis")
async def analysis(user_id: str) -> dict[str, str]:
    if hasattr(instrumentation, "business_events"):
        events = instrumentation.business_events
        events.analysis_started("progress")
        events.api_cost_tracked("analyze", "gpt-4o-mini", 0.0021)
        events.analysis_completed("progress", duration_ms=12.5, insights_count=3, cost_usd=0.0021)
    return {"status": "done"}


@app.get("/api/user/{user_id}/fail")
async def fail(user_id: str) -> None:
    """A handled failure: tracked, then answered with 500."""
    error = TimeoutError("model call timed out")
    if hasattr(instrumentation, "error_tracker"):
        instrumentation.error_tracker.track(error, operation="call_model")
    if hasattr(instrumentation, "business_events"):
        instrumentation.business_events.analysis_failed("progress", error)
    raise HTTPException(status_code=500, detail="analysis failed")


@app.get("/api/boom")
async def boom() -> None:
    """An unhandled exception: the middleware records it as a 500 and logs the stack."""
    raise RuntimeError("boom")
