"""`instrument_app()`: correlation, metrics, `/metrics` and exception logging for a FastAPI app."""

from __future__ import annotations

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
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from instrumentation.accounting import LogAccountingCollector
from instrumentation.faults import FaultCollector
from instrumentation.logger import get_logger
from instrumentation.logging_setup import logging_configured, reclaim_server_loggers, setup_logging
from instrumentation.middleware import CorrelationMiddleware
from instrumentation.multiprocess import multiprocess_directory
from instrumentation.runtime import Runtime, process_runtime
from instrumentation.settings import safe_name
from instrumentation.shared_metrics import shared_registry, start_worker
from instrumentation.tracing import is_tracing_middleware
from instrumentation.vocabulary import QUIET_PATHS

_log = get_logger("corrstack.runtime")
# Each instrumented app's runtime: instrumenting it again is checked against it.
_instrumented: weakref.WeakKeyDictionary[Starlette, Runtime] = weakref.WeakKeyDictionary()
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
    quiet_paths: Iterable[str] = QUIET_PATHS,
) -> Starlette:
    """Instrument a FastAPI (or Starlette) app; call once, before it serves.

    Adds CorrelationMiddleware as the outermost layer, the `/metrics` endpoint serving
    `registry`, and JSON logging through `setup_logging()` unless it already ran. With
    PROMETHEUS_MULTIPROC_DIR set, the directory is checked here (a wrong one raises
    MultiprocessDirectoryError) and `/metrics` serves every worker's sum, with exemplars.

    The app gets a runtime (`instrumentation.runtime`): `service` (default: the process's),
    the process's environment, `registry` (default: the process's, prometheus_client's global
    one unless configured) and an error tracker. Lines written in its requests, the business
    events, timings and errors tracked there, and the alerts they raise all carry that service
    and land in that registry. Precedence:

    - `setup_logging()` has not run: it runs with `service` and `registry`, and the app shares
      the process's runtime.
    - It has run with the same service and registry (or they are not given): the app shares
      the process's runtime.
    - Otherwise the arguments win for this app's requests; lines outside them keep the
      process's service. One line at startup names both values:
      ``instrument_app(service='api') differs from setup_logging(service='first'): …``.
    - Instrumenting an app again with the same service and registry does nothing; with others
      it raises ValueError naming both.

    >>> app = FastAPI()
    >>> instrument_app(app, service="api")
    """
    if service is not None:
        service = safe_name("service", service)
    existing = _instrumented.get(app)
    if existing is not None:
        _check_same(existing, service, registry)
        return app
    if not logging_configured():
        setup_logging(service, registry=registry)
    runtime = _runtime_for(process_runtime(), service, registry)
    # An app sharing the process's runtime binds none: the process's is the current one then.
    bound = None if runtime is process_runtime() else runtime
    runtime.error_tracker.configure()  # a malformed ERROR_ALERT_* value fails here, at startup
    directory = multiprocess_directory()
    if directory is not None:  # a wrong directory fails here, at startup
        start_worker(directory, runtime.service)
    _instrumented[app] = runtime
    _register_collectors(runtime.registry)
    if metrics_path:
        served = runtime.registry if directory is None else shared_registry(directory)
        app.add_route(metrics_path, metrics_endpoint(served), include_in_schema=False)

    build_stack = app.build_middleware_stack

    def build_with_correlation() -> ASGIApp:
        # Built on the first ASGI call (lifespan startup under uvicorn), after the server has
        # applied its own logging config: `uvicorn.run(app)` re-adds its text handlers.
        reclaim_server_loggers()
        stack = build_stack()

        def correlation(inner: ASGIApp) -> ASGIApp:
            return CorrelationMiddleware(
                inner, runtime=bound, routes=lambda: app.routes, quiet_paths=quiet_paths
            )

        wrapped = app.build_middleware_stack is not build_with_correlation
        return _place_correlation(stack, correlation, wrapped_by_another=wrapped)

    app.build_middleware_stack = build_with_correlation  # type: ignore[method-assign]
    return app


def _place_correlation(
    stack: ASGIApp, correlation: Callable[[ASGIApp], ASGIApp], *, wrapped_by_another: bool
) -> ASGIApp:
    """Where CorrelationMiddleware goes in the stack `build_middleware_stack` built."""
    if isinstance(stack, ServerErrorMiddleware):
        if is_tracing_middleware(stack.app):
            # FastAPIInstrumentor ran first: OpenTelemetry's middleware, then us, so its
            # server span is current all through, and ServerErrorMiddleware's 500 is ours.
            tracing = stack.app
            tracing.app = correlation(tracing.app)  # type: ignore[attr-defined]
            return stack
        if wrapped_by_another:
            # Another instrumentation (FastAPIInstrumentor, instrumented after us) wraps
            # this build and expects ServerErrorMiddleware back: go just inside it.
            stack.app = correlation(stack.app)
            return stack
    # Outside ServerErrorMiddleware, so even its 500 response passes through us.
    return correlation(stack)


def _runtime_for(
    process: Runtime, service: str | None, registry: CollectorRegistry | None
) -> Runtime:
    """The process's runtime when the app asks for nothing else, else one of its own."""
    same_service = service is None or service == process.service
    if same_service and (registry is None or registry is process.registry):
        return process
    if not same_service:
        _log.info(
            f"instrument_app(service={service!r}) differs from "
            f"setup_logging(service={process.service!r}): this app's requests log, count and "
            f"alert as {service!r}; lines outside them stay {process.service!r}",
            app_service=service,
            process_service=process.service,
        )
    return Runtime.create(
        service or process.service,
        process.environment,
        process.registry if registry is None else registry,
    )


def _check_same(runtime: Runtime, service: str | None, registry: CollectorRegistry | None) -> None:
    if service is not None and service != runtime.service:
        raise ValueError(
            f"instrument_app(service={service!r}) conflicts with the app's earlier "
            f"instrument_app(service={runtime.service!r}): instrument an app once"
        )
    if registry is not None and registry is not runtime.registry:
        raise ValueError(
            f"instrument_app(registry={registry!r}) conflicts with the app's earlier "
            f"registry {runtime.registry!r}: instrument an app once"
        )
