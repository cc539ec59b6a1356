"""One correlation context per websocket connection, for CorrelationMiddleware.

The ID comes from the handshake headers and is validated as for HTTP (an invalid one is
replaced, with the same warning); it is echoed as `X-Correlation-ID` on the handshake response
(`websocket.accept`). Every line written while the connection is served carries it and the
path's `user_id`. When the connection ends: one access line, the open gauge back down, and
`websocket_connections_closed_total{route, code}` counted.

The close code is the first close seen: the app's `websocket.close` (`code`, default 1000) or
the client's `websocket.disconnect`; 1006 (abnormal closure) when there was none because the
app raised or was cancelled. A handshake the app rejects (close before accept: uvicorn answers
HTTP 403) was never an open connection: it writes its access line (`status` 403, the close
message's code) and counts in no websocket metric, so `closed_total` and the open gauge add up.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from instrumentation.access_record import AccessRecords
from instrumentation.accounting import count_drop
from instrumentation.connection_context import (
    HEADER,
    bind_connection,
    cached_child,
    unbind_connection,
)
from instrumentation.metrics import Metrics
from instrumentation.routes import RouteResolver, is_mounted, route_template
from instrumentation.runtime import Runtime
from instrumentation.sanitize import clean_text
from instrumentation.tracing import current_span_ids
from instrumentation.vocabulary import UNMATCHED_ROUTE

METHOD = "WEBSOCKET"  # the access line's `method`: tells connection lines from request lines
NORMAL_CLOSURE = 1000  # RFC 6455: an ASGI `websocket.close` without `code`
ABNORMAL_CLOSURE = 1006  # RFC 6455: closed without a close frame (the app raised)
_ACCEPTED = 101  # the handshake's HTTP status once accepted
_REJECTED = 403  # uvicorn's answer to a close before accept
_FAILED = 500  # uvicorn's answer when the app raised or returned before accepting
_log = logging.getLogger("corrstack.access")


class WebsocketCorrelation:
    """Serves websocket scopes for CorrelationMiddleware; per-connection state in `__call__`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        runtime: Runtime | None,
        metrics: Metrics,
        resolver: RouteResolver | None,
        access: AccessRecords,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self._open = metrics.websocket_connections_open
        self._closed = metrics.websocket_connections_closed_total
        self._resolver = resolver
        self._access = access
        # Metric children, cached like the HTTP ones.
        self._open_children: dict[tuple[str], Any] = {}
        self._closed_children: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        request_id, _, user_agent, look_for_span, tokens = bind_connection(scope, self.runtime)
        late_span: tuple[str, str] | None = None
        response_header = (HEADER, request_id.encode())
        route: str | None = None
        status = _FAILED
        close_code: int | None = None
        messages_in = messages_out = 0
        open_gauge: Any = None

        async def receive_counted() -> Message:
            nonlocal messages_in, close_code
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                messages_in += 1
            elif kind == "websocket.disconnect" and close_code is None:
                close_code = int(message.get("code", NORMAL_CLOSURE))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal messages_out, close_code, status, route, open_gauge, late_span
            nonlocal look_for_span
            kind = message["type"]
            if kind == "websocket.send":
                messages_out += 1
            elif kind == "websocket.accept":
                if look_for_span:
                    look_for_span, late_span = False, current_span_ids()
                message = {**message, "headers": [*message.get("headers", ()), response_header]}
                await send(message)
                status, route = _ACCEPTED, self._route(scope)
                open_gauge = cached_child(self._open_children, self._open, (route,))
                open_gauge.inc()
                return
            elif kind == "websocket.close" and close_code is None:
                close_code = int(message.get("code") or NORMAL_CLOSURE)
                if status != _ACCEPTED:
                    status = _REJECTED
            elif kind == "websocket.http.response.start":  # the denial-response extension
                status = int(message["status"])
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive_counted, send_with_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
            raise
        finally:
            try:
                if open_gauge is not None:
                    open_gauge.dec()
                code = ABNORMAL_CLOSURE if close_code is None else close_code
                if route is None:
                    route = self._route(scope)
                if open_gauge is not None:
                    cached_child(self._closed_children, self._closed, (route, str(code))).inc()
                self._access_line(
                    scope,
                    route,
                    status,
                    code,
                    perf_counter() - start,
                    (messages_in, messages_out),
                    user_agent,
                    error,
                    late_span,
                )
            except Exception:  # a failing log filter or handler never breaks the connection
                count_drop("access_line", "error")
            finally:
                unbind_connection(tokens)

    def _route(self, scope: Scope) -> str:
        """The template once the router matched; the resolver's where the scope lacks it."""
        route = route_template(scope)
        if (route == UNMATCHED_ROUTE or is_mounted(scope)) and self._resolver is not None:
            route = self._resolver.template(scope["path"])
        return route

    def _access_line(
        self,
        scope: Scope,
        route: str,
        status: int,
        code: int,
        duration: float,
        messages: tuple[int, int],
        user_agent: str,
        error: BaseException | None,
        late_span: tuple[str, str] | None,
    ) -> None:
        level = logging.ERROR if error is not None else logging.INFO
        if not _log.isEnabledFor(level):
            return
        client = scope.get("client")
        path = clean_text(scope["path"])
        fields: dict[str, Any] = {
            "method": METHOD,
            "route": route,
            "path": path,
            "status": status,
            "close_code": code,
            # Not `duration_ms`: a long-lived connection is not a slow request, and the
            # dashboards' slow-request panels read `duration_ms`.
            "connection_ms": round(duration * 1000, 3),
            "messages_in": messages[0],
            "messages_out": messages[1],
            "client_addr": f"{client[0]}:{client[1]}" if client else "",
            "user_agent": clean_text(user_agent, 512),
        }
        self._access.emit(level, f"{METHOD} {path} closed {code}", fields, scope, late_span, error)
