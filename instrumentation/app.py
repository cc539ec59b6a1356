"""`instrument_app()`: correlation, metrics, `/metrics` and exception logging for a FastAPI app."""

from __future__ import annotations

import logging
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
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from instrumentation.accounting import LogAccountingCollector
from instrumentation.logging_setup import setup_logging
from instrumentation.metrics import metrics_for, use_registry
from instrumentation.middleware import CorrelationMiddleware

_INSTRUMENTED = "_corrstack_instrumented"
_registries_with_collectors: set[int] = set()


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving `registry`: OpenMetrics (with exemplars) when the scraper asks."""

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return metrics


def _register_collectors(registry: CollectorRegistry) -> None:
    if id(registry) in _registries_with_collectors:
        return
    _registries_with_collectors.add(id(registry))
    if registry is not REGISTRY:  # the global registry has these already
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    registry.register(LogAccountingCollector())


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
    registry = REGISTRY if registry is None else registry
    metrics_for(registry)
    _register_collectors(registry)
    use_registry(registry)
    if metrics_path:
        app.add_route(metrics_path, metrics_endpoint(registry), include_in_schema=False)

    build_stack = app.build_middleware_stack

    def build_with_correlation() -> ASGIApp:
        # Outside ServerErrorMiddleware, so even its 500 response passes through us.
        return CorrelationMiddleware(
            build_stack(), registry=registry, routes=lambda: app.routes, quiet_paths=quiet_paths
        )

    app.build_middleware_stack = build_with_correlation  # type: ignore[method-assign]
    return app
