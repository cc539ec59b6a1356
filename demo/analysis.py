"""The `analysis` service: simulated model calls that analyse a user's training.

`uvicorn demo.analysis:app --port 8001`. Environment: `SERVICE_NAME` (default `analysis`),
`ERROR_RATE`, `SLOW_RATE` and the logging variables of `setup_logging()`.
"""

from __future__ import annotations

import asyncio
import os
import random
from time import perf_counter

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from demo.schemas import AnalyzeRequest, AnalyzeResult, UserId
from demo.settings import DemoSettings
from demo.simulation import (
    ModelCall,
    ModelOverloadedError,
    ModelTimeoutError,
    plan_model_call,
)
from instrumentation import (
    business_events,
    error_tracker,
    get_logger,
    instrument_app,
    log_performance,
)

SERVICE = "analysis"
COST_ENDPOINT = "/analyze"
_INSIGHTS = (
    "Squat depth improved over the last two weeks",
    "Rest days are too close together",
    "Upper-body volume lags behind lower-body volume",
    "Cardio sessions are consistently shorter than planned",
    "Sleep before training days is below seven hours",
    "Progressive overload stalled on the bench press",
    "Mobility work is missing after long runs",
)

log = get_logger(__name__)


@log_performance("analysis.model_call")
async def _call_model(call: ModelCall) -> None:
    await asyncio.sleep(call.latency_s)
    error = call.error()
    if error is not None:
        raise error


def create_app(
    settings: DemoSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    rng: random.Random | None = None,
) -> FastAPI:
    """The analysis app; tests pass their own registry and a seeded `rng`."""
    settings = settings or DemoSettings.from_env()
    rng = rng or random.Random()
    app = FastAPI(title="corrstack demo: analysis")
    instrument_app(app, service=os.environ.get("SERVICE_NAME") or SERVICE, registry=registry)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/analyze/{user_id}", response_model=AnalyzeResult)
    async def analyze(user_id: UserId, request: AnalyzeRequest) -> AnalyzeResult | JSONResponse:
        call = plan_model_call(
            rng,
            request.analysis_type,
            error_rate=settings.error_rate,
            slow_rate=settings.slow_rate,
        )
        log.info(
            "Analysis started",
            analysis_type=request.analysis_type,
            history_days=request.history_days,
            model=call.model,
        )
        started = perf_counter()
        try:
            await _call_model(call)
        except ModelOverloadedError as exc:
            error_tracker.track(exc, "analysis.model_call", severity="warning", model=call.model)
            log.warning("Model overloaded, asking the caller to retry", model=call.model)
            overloaded = {"detail": "analysis model overloaded"}
            return JSONResponse(overloaded, status_code=503, headers={"Retry-After": "1"})
        except ModelTimeoutError as exc:
            # Left unhandled on purpose: the middleware answers 500 and logs the stack once.
            error_tracker.track(exc, "analysis.model_call", severity="error", model=call.model)
            raise
        duration_ms = round((perf_counter() - started) * 1000, 3)
        business_events.api_cost_tracked(
            COST_ENDPOINT, call.model, call.cost_usd, user_id=user_id, tokens=call.tokens
        )
        insights = rng.sample(_INSIGHTS, min(call.insights_count, len(_INSIGHTS)))
        log.info(
            "Analysis finished",
            analysis_type=request.analysis_type,
            insights_count=len(insights),
            tokens=call.tokens,
            cost_usd=call.cost_usd,
            duration_ms=duration_ms,
        )
        return AnalyzeResult(
            user_id=user_id,
            analysis_type=request.analysis_type,
            model=call.model,
            insights=insights,
            cost_usd=call.cost_usd,
            duration_ms=duration_ms,
        )

    return app


app = create_app()
