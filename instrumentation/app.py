"""`instrument_app()`: correlation, metrics, `/metrics` and exception logging for a FastAPI app."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from instrumentation.accounting import LogAccountingCollector
from instrumentation.error_tracking import error_tracker
from instrumentation.faults import FaultCollector
from instrumentation.logging_setup import reclaim_server_loggers, setup_logging
from instrumentation.metrics import metrics_for, use_registry
from instrumentation.middleware import CorrelationMiddleware

_INSTRUMENTED = "_corrstack_instrumented"
_registries_with_collectors: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving `registry`: OpenMetrics (with exemplars) when the scraper asks.

    Rendering takes milliseconds for a few hundred series, so it runs in the thread pool and
    never holds up the event loop.
    """

    def render(accept: str) -> Response:
        encoder, content_type = choose_encoder(accept)
        return Response(encoder(registry), media_type=content_type)

    async def metrics(request: Request) -> Response:
        return await run_in_threadpool(render, request.headers.get("accept", ""))

    return metrics


def _register_collectors(registry: CollectorRegistry) -> None:
    if registry in _registries_with_collectors:
        return
    _registries_with_collectors.add(registry)
    if registry is not REGISTRY:  # the global registry has these already
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    registry.register(LogAccountingCollector())
    registry.register(FaultCollector())


def instrument_app(
    app: Starlette,
    *,
    service: str | None = None,
    registry: CollectorRegistry | None = None,
    metrics_path: str | None = "/metrics",
    quiet_paths: Iterable[str] = ("/metrics", "/health", "/healthz", "/ready"),
) -> Starlette:
    """Instrument a FastAPI (or Starlette) app; call once, before it serves.

    Adds CorrelationMiddleware as the outermost layer, the `/metrics` endpoint, and JSON
    logging through `setup_logging()` unless it already ran.

    >>> app = FastAPI()
    >>> instrument_app(app, service="api")
    """
    if getattr(app, _INSTRUMENTED, False):
        return app
    setattr(app, _INSTRUMENTED, True)
    if not any(getattr(h, "_corrstack_handler", False) for h in logging.getLogger().handlers):
        setup_logging(service)
    error_tracker.configure()  # a malformed ERROR_ALERT_* value fails here, at startup
    registry = REGISTRY if registry is None else registry
    metrics_for(registry)
    _register_collectors(registry)
    use_registry(registry)
    if metrics_path:
        app.add_route(metrics_path, metrics_endpoint(registry), include_in_schema=False)

    build_stack = app.build_middleware_stack

    def build_with_correlation() -> ASGIApp:
        # Built on the first ASGI call (lifespan startup under uvicorn), after the server has
        # applied its own logging config: `uvicorn.run(app)` re-adds its text handlers.
        reclaim_server_loggers()
        # Outside ServerErrorMiddleware, so even its 500 response passes through us.
        return CorrelationMiddleware(
            build_stack(), registry=registry, routes=lambda: app.routes, quiet_paths=quiet_paths
        )

    app.build_middleware_stack = build_with_correlation  # type: ignore[method-assign]
    return app
