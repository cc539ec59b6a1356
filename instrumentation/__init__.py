"""corrstack instrumentation: one request ID in every log line, metric exemplar and alert."""

from instrumentation.app import instrument_app
from instrumentation.context import bind_context, current_context
from instrumentation.logger import get_logger
from instrumentation.logging_setup import setup_logging
from instrumentation.middleware import CorrelationMiddleware
from instrumentation.propagation import (
    add_correlation_headers,
    add_correlation_headers_async,
    async_httpx_event_hooks,
    correlation_headers,
    httpx_event_hooks,
)

__all__ = [
    "CorrelationMiddleware",
    "add_correlation_headers",
    "add_correlation_headers_async",
    "async_httpx_event_hooks",
    "bind_context",
    "correlation_headers",
    "current_context",
    "get_logger",
    "httpx_event_hooks",
    "instrument_app",
    "setup_logging",
]
