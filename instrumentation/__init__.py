"""corrstack instrumentation: one request ID in every log line, metric exemplar and alert."""

from instrumentation.app import instrument_app
from instrumentation.business import BusinessEvents, business_events
from instrumentation.context import bind_context, current_context
from instrumentation.error_tracking import ErrorTracker, Thresholds
from instrumentation.logger import get_logger
from instrumentation.logging_setup import flush_logging, setup_logging, shutdown_logging
from instrumentation.middleware import CorrelationMiddleware
from instrumentation.performance import log_performance
from instrumentation.propagation import (
    add_correlation_headers,
    add_correlation_headers_async,
    async_httpx_event_hooks,
    correlation_headers,
    httpx_event_hooks,
)
from instrumentation.runtime import CurrentErrorTracker, Runtime, current_runtime, error_tracker
from instrumentation.task_context import in_context, job_context, task_context, task_headers

__all__ = [
    "BusinessEvents",
    "CorrelationMiddleware",
    "CurrentErrorTracker",
    "ErrorTracker",
    "Runtime",
    "Thresholds",
    "add_correlation_headers",
    "add_correlation_headers_async",
    "async_httpx_event_hooks",
    "bind_context",
    "business_events",
    "correlation_headers",
    "current_context",
    "current_runtime",
    "error_tracker",
    "flush_logging",
    "get_logger",
    "httpx_event_hooks",
    "in_context",
    "instrument_app",
    "job_context",
    "log_performance",
    "setup_logging",
    "shutdown_logging",
    "task_context",
    "task_headers",
]
