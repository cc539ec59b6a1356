"""The `api` gateway of the fitness-coaching demo: profiles, analyses and routines.

`uvicorn demo.api:app --port 8000`. Environment: `SERVICE_NAME` (default `api`),
`ANALYSIS_URL` (default `http://127.0.0.1:8001`), `CELERY_BROKER_URL` (unset: no
notifications) and the logging variables of `setup_logging()`. Calls to `analysis` carry
`X-Correlation-ID` and `traceparent`, so one request_id finds the lines of both services.
With a broker, a generated routine hands its "routine ready" notification to the `worker`
(demo/worker.py), whose lines of that task carry the request's request_id and trace_id too.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from prometheus_client import CollectorRegistry

from demo.routines import build_routine
from demo.schemas import (
    GOALS,
    LEVELS,
    AnalyzeRequest,
    AnalyzeResult,
    Profile,
    Routine,
    RoutineRequest,
    UserId,
)
from demo.settings import DemoSettings
from demo.simulation import AnalysisType
from instrumentation import (
    async_httpx_event_hooks,
    business_events,
    error_tracker,
    get_logger,
    instrument_app,
)

SERVICE = "api"
# Above the analysis service's slowest simulated call (3 s), below a client's patience.
ANALYSIS_TIMEOUT_S = 5.0

log = get_logger(__name__)


class AnalysisUnavailableError(Exception):
    """The analysis service failed or did not answer; the gateway answers 502 or 504."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def analysis_client(
    settings: DemoSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The client for `analysis`; its event hooks add the correlation headers to every call."""
    return httpx.AsyncClient(
        base_url=settings.analysis_url,
        transport=transport,
        timeout=ANALYSIS_TIMEOUT_S,
        event_hooks=async_httpx_event_hooks(),
    )


async def _analyze(
    client: httpx.AsyncClient, user_id: str, analysis_type: AnalysisType, history_days: int
) -> AnalyzeResult:
    body = AnalyzeRequest(analysis_type=analysis_type, history_days=history_days)
    try:
        response = await client.post(f"/analyze/{user_id}", json=body.model_dump())
    except httpx.TimeoutException as exc:
        raise AnalysisUnavailableError(f"analysis timed out: {exc!r}", 504) from exc
    except httpx.TransportError as exc:
        raise AnalysisUnavailableError(f"analysis unreachable: {exc!r}", 502) from exc
    if response.status_code != 200:
        raise AnalysisUnavailableError(f"analysis answered {response.status_code}", 502)
    return AnalyzeResult.model_validate_json(response.content)


# Publishes the notification task (user_id, goal, exercises_count) and returns its task id.
Notifier = Callable[[str, str, int], str]


def routine_notifier(settings: DemoSettings) -> Notifier | None:
    """The publisher of the worker's "routine ready" task; None without a broker or Celery."""
    if not settings.broker_url:
        return None
    try:
        from demo import worker  # imports Celery
    except ImportError as exc:
        log.warning(
            "CELERY_BROKER_URL is set but Celery is not installed: no notifications",
            error=repr(exc),
        )
        return None
    worker.celery_app.conf.broker_url = settings.broker_url

    def notify(user_id: str, goal: str, exercises_count: int) -> str:
        result: Any = worker.notify_routine_ready.delay(user_id, goal, exercises_count)
        return str(result.id)

    return notify


async def _hand_off(notifier: Notifier, user_id: str, goal: str, exercises_count: int) -> None:
    """Publish the notification off the event loop (the thread gets a copy of the request's
    context, so the task carries its request_id); a broker that is down costs the user nothing
    but the notification."""
    try:
        task_id = await asyncio.to_thread(notifier, user_id, goal, exercises_count)
    except Exception as exc:
        error_tracker.track(exc, "routine.notify", severity="warning")
        return
    log.info("Routine ready notification queued", task_id=task_id)


def create_app(
    settings: DemoSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The api app; tests pass a registry and an `httpx.ASGITransport` to the analysis app."""
    settings = settings or DemoSettings.from_env()
    client = analysis_client(settings, transport)
    notifier = routine_notifier(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("Serving", analysis_url=settings.analysis_url, notifications=notifier is not None)
        yield
        await client.aclose()

    app = FastAPI(title="corrstack demo: api", lifespan=lifespan)
    app.state.analysis_client = client
    instrument_app(app, service=os.environ.get("SERVICE_NAME") or SERVICE, registry=registry)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/user/{user_id}/profile", response_model=Profile)
    async def profile(user_id: UserId) -> Profile:
        # Registered demo users look like user-0042; anything else is unknown here.
        if not (user_id.startswith("user-") and user_id[5:].isdigit()):
            log.info("Profile not found")
            raise HTTPException(status_code=404, detail="unknown user")
        await asyncio.sleep(0.002)  # a cache hit's worth of work
        seed = zlib.crc32(user_id.encode())
        log.info("Profile served")
        return Profile(
            user_id=user_id,
            level=LEVELS[seed % len(LEVELS)],
            goal=GOALS[seed // 7 % len(GOALS)],
            workouts_completed=seed % 240,
        )

    @app.post("/api/user/{user_id}/analysis", response_model=AnalyzeResult)
    async def analysis(user_id: UserId, request: AnalyzeRequest) -> AnalyzeResult:
        business_events.analysis_started(request.analysis_type, history_days=request.history_days)
        started = perf_counter()
        try:
            result = await _analyze(client, user_id, request.analysis_type, request.history_days)
        except AnalysisUnavailableError as exc:
            business_events.analysis_failed(request.analysis_type, str(exc))
            error_tracker.track(exc, "analysis.request", severity="error")
            raise HTTPException(exc.status_code, detail="analysis unavailable") from exc
        duration_ms = round((perf_counter() - started) * 1000, 3)
        business_events.analysis_completed(
            request.analysis_type, duration_ms, len(result.insights), result.cost_usd
        )
        log.info("Analysis delivered", model=result.model, insights_count=len(result.insights))
        return result

    @app.post("/api/user/{user_id}/routine/generate", response_model=Routine)
    async def generate_routine(user_id: UserId, request: RoutineRequest) -> Routine:
        log.info("Generating routine", goal=request.goal, days_per_week=request.days_per_week)
        try:
            assessment = await _analyze(client, user_id, "movement", history_days=28)
        except AnalysisUnavailableError as exc:
            error_tracker.track(exc, "routine.generate", severity="error")
            raise HTTPException(exc.status_code, detail="analysis unavailable") from exc
        routine = build_routine(user_id, request, assessment.insights)
        business_events.routine_generated(
            len(routine.exercises), goal=request.goal, days_per_week=request.days_per_week
        )
        if notifier is not None:
            await _hand_off(notifier, user_id, request.goal, len(routine.exercises))
        return routine

    return app


app = create_app()
