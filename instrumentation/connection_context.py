"""The correlation context of one connection — an HTTP request or a websocket — from its
headers, bound for as long as it is served.

The correlation contract is applied here once for both: a valid `X-Correlation-ID` (or
`X-Request-ID`) is kept, anything else replaced (with one warning); `traceparent` is continued;
the current OpenTelemetry span's ids win when there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextvars import Token
from typing import Any

from starlette.types import Scope

from instrumentation.accounting import count_drop
from instrumentation.context import Connection, connection_var
from instrumentation.ids import new_ids, parse_traceparent, valid_id_bytes
from instrumentation.runtime import Runtime
from instrumentation.tracing import current_span_ids, tracing_available

HEADER = b"x-correlation-id"
_warn = logging.getLogger("corrstack.correlation")
# The request headers read: X-Correlation-ID, X-Request-ID (when no X-Correlation-ID came first
# or later), traceparent, User-Agent.
_WANTED = {HEADER: 0, b"x-request-id": 1, b"traceparent": 2, b"user-agent": 3}

# (request_id, trace_id, user agent, look for a span later, the ContextVar token)
Bound = tuple[str, str, str, bool, Token[Connection]]


def request_ids(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[str, str, str, bytes | None, str]:
    """(request_id, trace_id, span_id, rejected header name or None, user agent)."""
    raw_id: bytes | None = None
    id_header = b""
    traceparent: bytes | None = None
    user_agent = b""
    for name, value in headers:
        wanted = _WANTED.get(name)  # one lookup for the headers read here, most are not
        if wanted is None:
            continue
        if wanted == 0 or (wanted == 1 and raw_id is None):
            raw_id, id_header = value, name
        elif wanted == 2:
            traceparent = value
        elif wanted == 3:
            user_agent = value
    fresh = new_ids()  # one random draw for all three: request_id, trace_id, span_id
    rejected = None
    if raw_id is not None and valid_id_bytes(raw_id):
        request_id = raw_id.decode("ascii")
    else:
        request_id = fresh[:32]
        if raw_id is not None:
            rejected = id_header
    parent = parse_traceparent(traceparent) if traceparent is not None else None
    trace_id = parent.trace_id if parent is not None else fresh[32:64]
    return request_id, trace_id, fresh[64:], rejected, user_agent.decode("latin-1")


def warn_invalid_id(header: bytes) -> None:
    try:
        _warn.warning("Invalid correlation ID replaced", extra={"header": header.decode()})
    except Exception:  # as for the access line: a failing filter never fails a request
        count_drop("correlation_warning", "error")


def bind_connection(scope: Scope, runtime: Runtime | None) -> Bound:
    """Bind `runtime`, the connection's IDs and `scope`; undo with `unbind_connection`.

    The fourth item says whether to look for an OpenTelemetry span again once the app runs:
    OpenTelemetry's middleware inside ours makes its span current only there.
    """
    request_id, trace_id, span_id, rejected, user_agent = request_ids(scope["headers"])
    span = current_span_ids()
    if span is not None:  # OpenTelemetry's server span, which continued any traceparent
        trace_id, span_id = span
    token = connection_var.set(Connection(runtime, request_id, trace_id, span_id, scope))
    if rejected is not None:
        warn_invalid_id(rejected)
    return request_id, trace_id, user_agent, span is None and tracing_available(), token


def unbind_connection(token: Token[Connection]) -> None:
    connection_var.reset(token)


def cached_child(cache: dict[Any, Any], metric: Any, key: tuple[Any, ...]) -> Any:
    """`metric.labels(*key)`, from `cache` after the first time: one dict lookup."""
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*key)
    return child
