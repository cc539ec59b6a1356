"""CorrelationMiddleware: pure ASGI, one correlation context per HTTP request or websocket.

It binds its app's runtime and request_id, trace_id and span_id before the app runs (the
current OpenTelemetry span's trace_id and span_id when there is one), echoes
`X-Correlation-ID` on the response, records the HTTP metrics with a `{request_id, trace_id}`
exemplar, and writes exactly one access line. Placed outside Starlette's ServerErrorMiddleware
(see `instrument_app`), the 500 response of an unhandled exception carries the header too.
A websocket connection gets the same context, from its handshake headers, for as long as it is
open (`instrumentation.websocket_correlation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextvars import Token
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from instrumentation.access_record import AccessRecords
from instrumentation.accounting import count_drop
from instrumentation.connection_context import (
    HEADER,
    bind_connection,
    cached_child,
)
from instrumentation.context import NO_CONNECTION, Connection, connection_var
from instrumentation.routes import RouteResolver, is_mounted, route_template
from instrumentation.runtime import Runtime, process_runtime
from instrumentation.sanitize import MAX_FIELD_CHARS, clean_text
from instrumentation.tracing import current_span_ids
from instrumentation.vocabulary import QUIET_PATHS, UNMATCHED_ROUTE
from instrumentation.websocket_correlation import WebsocketCorrelation

_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_log = logging.getLogger("corrstack.access")


async def _send_unbound(send: Send, message: Message, token: Token[Connection]) -> None:
    """`send(message)` with the connection that `token`'s binding replaced, from a context
    other than the one `token` was made in (where it cannot be reset)."""
    outer = token.old_value
    unbound = connection_var.set(NO_CONNECTION if outer is Token.MISSING else outer)
    try:
        await send(message)
    finally:
        connection_var.reset(unbound)


class CorrelationMiddleware:
    """Pure ASGI middleware; per-request state lives in `__call__`, never on `self`.

    A `runtime` is bound for every request, lifespan and websocket: what the app counts, logs
    and alerts there goes to its registry and carries its service. Without one, the process's
    runtime of the moment is used and the HTTP metrics go to the registry it has now.

    >>> app = CorrelationMiddleware(app)           # any ASGI app
    >>> instrument_app(fastapi_app)                # FastAPI: also /metrics and logging
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        runtime: Runtime | None = None,
        routes: Callable[[], Iterable[Any]] | None = None,
        quiet_paths: Iterable[str] = QUIET_PATHS,
    ) -> None:
        self.app = app
        self.runtime = runtime
        metrics = self._metrics = (process_runtime() if runtime is None else runtime).metrics
        self._requests = metrics.http_requests_total
        self._duration = metrics.http_request_duration_seconds
        self._in_progress = metrics.http_requests_in_progress
        self._resolver = RouteResolver(routes) if routes is not None else None
        self._quiet_paths = frozenset(quiet_paths)
        self._access = AccessRecords(_log)
        # Metric children, cached: one dict lookup per request instead of `.labels()`.
        self._counter_children: dict[tuple[str, str, int], Any] = {}
        self._histogram_children: dict[tuple[str, str], Any] = {}
        self._gauge_children: dict[tuple[str, str], Any] = {}
        self._websockets = WebsocketCorrelation(
            app, runtime=runtime, metrics=metrics, resolver=self._resolver, access=self._access
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websockets(scope, receive, send)
                return
            if self.runtime is None:
                await self.app(scope, receive, send)
                return
            token = connection_var.set(connection_var.get()._replace(runtime=self.runtime))
            try:
                await self.app(scope, receive, send)
            finally:
                connection_var.reset(token)
            return
        start = perf_counter()
        request_id, trace_id, user_agent, look_for_span, token = bind_connection(
            scope, self.runtime
        )
        late_span: tuple[str, str] | None = None
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
        gauge_route = self._resolver.template(scope["path"]) if self._resolver else UNMATCHED_ROUTE
        # Metric children cached: a dict lookup instead of `.labels()` (and on the hot path of
        # every request, no call that is not needed: each costs ~0.3 µs there).
        gauge = self._gauge_children.get((method, gauge_route)) or cached_child(
            self._gauge_children, self._in_progress, (method, gauge_route)
        )
        gauge.inc()
        status = 500
        response_header = (HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, late_span, look_for_span, token
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                if look_for_span:
                    look_for_span, late_span = False, current_span_ids()
                message = {**message, "headers": [*message.get("headers", ()), response_header]}
            elif kind == "http.response.body" and not message.get("more_body", False):
                # The response's end, where a server arms its timers for the connection
                # (uvicorn's keep-alive timer, from inside this send). A timer keeps a copy of
                # the context until it leaves the event loop — cancelled or not, up to its
                # timeout —, so the server's send runs in the context from before this
                # request: a timer kept with the request's binding made the collector run
                # 7 times as often under keep-alive load, and its full collections frequent.
                bound = connection_var.get()
                try:
                    connection_var.reset(token)
                except ValueError:  # sent from a task of the app's (Starlette streams so)
                    await _send_unbound(send, message, token)
                    return
                try:
                    await send(message)
                finally:
                    token = connection_var.set(bound)  # Starlette's background tasks follow
                return
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            status, error = 499, None  # the client went away
            raise
        except Exception as exc:
            status, error = 500, exc
            raise
        finally:
            try:
                gauge.dec()
                duration = perf_counter() - start
                route = route_template(scope)
                if route == UNMATCHED_ROUTE or is_mounted(scope):
                    # A plain Starlette route under FastAPI's router, or a mounted app's
                    # route: the resolver knows its full template.
                    route = gauge_route
                if late_span is not None:
                    trace_id = late_span[0]
                counter = self._counter_children.get((method, route, status)) or cached_child(
                    self._counter_children, self._requests, (method, route, status)
                )
                counter.inc()
                histogram = self._histogram_children.get((method, route))
                if histogram is None:
                    histogram = self._histogram_children[(method, route)] = (
                        self._metrics.histogram_child(self._duration, method, route)
                    )
                histogram.observe(duration, {"request_id": request_id, "trace_id": trace_id})
                self._access_line(
                    scope, method, route, status, duration, user_agent, error, late_span
                )
            except Exception:  # a third-party log filter or handler must not fail the request
                count_drop("access_line", "error")
            finally:
                connection_var.reset(token)  # `unbind_connection`, inlined

    def _access_line(
        self,
        scope: Scope,
        method: str,
        route: str,
        status: int,
        duration: float,
        user_agent: str,
        error: BaseException | None,
        late_span: tuple[str, str] | None = None,
    ) -> None:
        path = scope["path"]
        if error is not None or status >= 500:
            level = logging.ERROR
        elif path in self._quiet_paths:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not _log.isEnabledFor(level):
            return
        client = scope.get("client")
        if len(path) > MAX_FIELD_CHARS or not path.isprintable():  # as `clean_text` tests first
            path = clean_text(path)
        if len(user_agent) > 512 or not user_agent.isprintable():
            user_agent = clean_text(user_agent, 512)
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "client_addr": f"{client[0]}:{client[1]}" if client else "",
            "user_agent": user_agent,
        }
        self._access.emit(level, f"{method} {path} {status}", fields, scope, late_span, error)
