"""The bridge from the correlation context to stdlib logging.

Attached to corrstack's handlers, so records of every logger — the app's, uvicorn's, httpx's —
get the context of the request they were written in.
"""

from __future__ import annotations

import contextlib
import logging

from instrumentation.accounting import BOOT_ID, next_seq
from instrumentation.context import (
    current_user_id,
    fields_var,
    request_id_var,
    span_id_var,
    trace_id_var,
)

_LOGGED_MARK = "__corrstack_logged__"
# Only a server's report is dropped: an app's own lines about the same exception are kept.
_SERVER_LOGGERS = frozenset({"uvicorn.error", "uvicorn", "gunicorn.error", "hypercorn.error"})


class CorrelationFilter(logging.Filter):
    """Put request_id, trace_id, span_id, user_id, bound fields, `seq` and `boot_id` on a record.

    Also drops a server's second report of an exception the middleware already logged:
    uvicorn logs "Exception in ASGI application" for every exception an app re-raises.

    Values passed explicitly (`extra={"request_id": ...}`) win over the context. Runs once per
    record however many handlers carry it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        if "seq" in attrs:
            return True
        exc_info = record.exc_info
        if exc_info and record.name in _SERVER_LOGGERS and was_logged(exc_info[1]):
            return False  # a server's second report of an exception we logged with its stack
        if "request_id" not in attrs:
            attrs["request_id"] = request_id_var.get()
        if "trace_id" not in attrs:
            attrs["trace_id"] = trace_id_var.get()
        if "span_id" not in attrs:
            attrs["span_id"] = span_id_var.get()
        if "user_id" not in attrs:
            attrs["user_id"] = current_user_id()
        bound = fields_var.get()
        if bound:
            attrs["corrstack_fields"] = bound
        attrs["seq"] = next_seq()
        attrs["boot_id"] = BOOT_ID
        return True


def mark_logged(error: BaseException) -> None:
    """Remember that corrstack already logged `error` with its stack."""
    with contextlib.suppress(AttributeError):  # exceptions with __slots__
        setattr(error, _LOGGED_MARK, True)


def was_logged(error: BaseException | None) -> bool:
    return bool(getattr(error, _LOGGED_MARK, False))
