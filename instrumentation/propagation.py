"""Carry the correlation context to downstream calls."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from instrumentation.context import connection_var
from instrumentation.ids import format_traceparent
from instrumentation.tracing import current_span_ids


def correlation_headers() -> dict[str, str]:
    """Headers for an outbound call made while serving a request (empty outside one).

    `traceparent` continues the current OpenTelemetry span when one is current (with
    OpenTelemetry's httpx instrumentation active, it replaces this one by its client span's: one
    header, the same trace), else the request's own trace.

    >>> requests.get(url, headers=correlation_headers())
    """
    headers: dict[str, str] = {}
    connection = connection_var.get()
    if connection.request_id:
        headers["X-Correlation-ID"] = connection.request_id
    span = current_span_ids()  # the current OpenTelemetry span's, when there is one
    trace_id, span_id = span if span is not None else (connection.trace_id, connection.span_id)
    if trace_id and span_id:
        headers["traceparent"] = format_traceparent(trace_id, span_id)
    return headers


def add_correlation_headers(request: httpx.Request) -> None:
    """httpx request hook; headers the caller set explicitly are kept."""
    for name, value in correlation_headers().items():
        if name not in request.headers:
            request.headers[name] = value


async def add_correlation_headers_async(request: httpx.Request) -> None:
    """The same hook for `httpx.AsyncClient`."""
    add_correlation_headers(request)


def httpx_event_hooks() -> dict[str, list[Callable[[httpx.Request], Any]]]:
    """`httpx.Client(event_hooks=httpx_event_hooks())`"""
    return {"request": [add_correlation_headers]}


def async_httpx_event_hooks() -> dict[
    str, list[Callable[[httpx.Request], Coroutine[Any, Any, None]]]
]:
    """`httpx.AsyncClient(event_hooks=async_httpx_event_hooks())`"""
    return {"request": [add_correlation_headers_async]}
