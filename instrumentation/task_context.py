"""The correlation context beyond HTTP: task queues, executors and background jobs.

A task published while serving a request carries the request's context in its message
(`task_headers()`); the worker binds it for the run (`task_context()`), so its lines carry the
request's `request_id`, `trace_id` and `user_id` plus `task_id` and `task_name`. Any queue
can use the pair; `instrumentation.celery` wires them to Celery's signals.

>>> queue.put({"body": payload, "headers": task_headers()})          # the publisher
>>> with task_context(message["headers"], task_id=message["id"], task_name="send_email"):
...     send_email(message["body"])                                  # the worker

`in_context(fn)` carries the current context into `loop.run_in_executor`; `job_context(name)`
gives each run of a scheduled or background job a fresh context of its own.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from instrumentation.context import bind_context, connection_var, current_user_id
from instrumentation.ids import format_traceparent, new_ids, parse_traceparent, valid_id
from instrumentation.sanitize import clean_user_id
from instrumentation.tracing import current_span_ids

P = ParamSpec("P")
R = TypeVar("R")

REQUEST_ID_HEADER = "X-Correlation-ID"
TRACEPARENT_HEADER = "traceparent"
USER_ID_HEADER = "X-User-ID"


def task_headers() -> dict[str, str]:
    """Headers that carry the current context to a task: empty outside any context.

    `X-Correlation-ID` is the request's ID; `traceparent` has the request's trace id (the
    current OpenTelemetry span's when one is current) and a new span id — the task's span, a
    child of the publisher's; `X-User-ID` is the user's, when known.

    >>> channel.basic_publish(body, properties={"headers": task_headers()})
    """
    headers: dict[str, str] = {}
    connection = connection_var.get()
    if connection.request_id:
        headers[REQUEST_ID_HEADER] = connection.request_id
    span = current_span_ids()
    trace_id = span[0] if span is not None else connection.trace_id
    if trace_id:
        headers[TRACEPARENT_HEADER] = format_traceparent(trace_id, new_ids()[64:])
    user_id = current_user_id()
    if user_id:
        headers[USER_ID_HEADER] = user_id
    return headers


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


@contextmanager
def task_context(
    headers: Mapping[str, Any] | None,
    *,
    task_id: str | None = None,
    task_name: str | None = None,
    **fields: Any,
) -> Iterator[str]:
    """Bind the context `task_headers()` carried for the block; yields the request_id.

    Values are validated like HTTP headers: a missing or invalid `X-Correlation-ID` (or
    `X-Request-ID`) gets a fresh ID, a missing or malformed `traceparent` a fresh trace. The
    lines add `task_id`, `task_name` and any keyword fields; everything is restored after.

    >>> with task_context(message.headers, task_id=message.id, task_name="resize_image"):
    ...     resize(message.body)
    """
    headers = headers or {}
    fresh = new_ids()
    raw_id = _header(headers, REQUEST_ID_HEADER) or _header(headers, "X-Request-ID")
    request_id = raw_id if raw_id is not None and valid_id(raw_id) else fresh[:32]
    raw_parent = _header(headers, TRACEPARENT_HEADER)
    parent = None
    if raw_parent is not None and raw_parent.isascii():
        parent = parse_traceparent(raw_parent.encode("ascii"))
    trace_id, span_id = (
        (parent.trace_id, parent.parent_span_id)
        if parent is not None
        else (fresh[32:64], fresh[64:])
    )
    raw_user = _header(headers, USER_ID_HEADER)
    user_id = clean_user_id(raw_user) if raw_user else None
    extra = {"task_id": task_id, "task_name": task_name, **fields}
    with bind_context(
        request_id=request_id,
        trace_id=trace_id,
        span_id=span_id,
        user_id=user_id,
        **{key: value for key, value in extra.items() if value is not None},
    ):
        yield request_id


@contextmanager
def job_context(name: str, **fields: Any) -> Iterator[str]:
    """A fresh context for one run of a scheduled or background job; yields its request_id.

    Each run gets its own `request_id`, `trace_id` and `span_id` and no user; its lines add
    `job_name` and any keyword fields.

    >>> def nightly_cleanup() -> None:
    ...     with job_context("nightly_cleanup"):
    ...         log.info("Cleanup started")   # a request_id of this run only
    """
    fresh = new_ids()
    with bind_context(
        request_id=fresh[:32],
        trace_id=fresh[32:64],
        span_id=fresh[64:],
        user_id=None,
        job_name=name,
        **fields,
    ):
        yield fresh[:32]


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, run in a copy of the context current now: for `loop.run_in_executor`, which,
    unlike `asyncio.to_thread`, does not carry ContextVars to the thread.

    >>> await loop.run_in_executor(None, in_context(render_pdf), report_id)

    Each call gets its own copy, so the wrapper may run in several threads at once and what
    `fn` binds stays inside its call.
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run
