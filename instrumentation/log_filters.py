"""The bridge from the correlation context to stdlib logging.

Attached to corrstack's handlers, so records of every logger — the app's, uvicorn's, httpx's —
get the context of the request they were written in.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from instrumentation.accounting import boot_id, next_seq
from instrumentation.context import connection_var, current_user_id, fields_var
from instrumentation.ids import valid_id
from instrumentation.sanitize import clean_user_id
from instrumentation.tracing import current_span_ids

_LOGGED_MARK = "__corrstack_logged__"
# Set on a record the filter has seen, to an object no `extra=` can supply.
FILTERED_ATTR = "corrstack_filtered"


class Filtered(list[int]):
    """Where the filter's attributes are in a record's `__dict__`: `[start, end]` (this mark at
    `start`). The formatter skips them in one step instead of testing each."""

    __slots__ = ()


# The record attribute holding the bound fields (`bind_context(order_id=…)`), for the formatter.
BOUND_FIELDS_ATTR = "corrstack_fields"
_OWN_ATTRS = ("seq", "boot_id", BOUND_FIELDS_ATTR)
# Every attribute the filter puts on a record that is not a field of the line as it is.
FILTER_ATTRS = frozenset({*_OWN_ATTRS, FILTERED_ATTR})
# Only a server's report is dropped: an app's own lines about the same exception are kept.
_SERVER_LOGGERS = frozenset({"uvicorn.error", "uvicorn", "gunicorn.error", "hypercorn.error"})


class CorrelationFilter(logging.Filter):
    """Put request_id, trace_id, span_id, user_id, bound fields, `seq` and `boot_id` on a record.

    trace_id and span_id are the current OpenTelemetry span's when one is current
    (`instrumentation.tracing`), else the request's own.

    Also drops a server's second report of an exception the middleware already logged:
    uvicorn logs "Exception in ASGI application" for every exception an app re-raises.

    Values passed explicitly (`extra={"request_id": ...}`) win over the context. Runs once per
    record however many handlers carry it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return self.filter_attrs(record.__dict__)

    def filter_attrs(self, attrs: dict[str, Any]) -> bool:
        """`filter` on a record's `__dict__` (what SinkHandler calls, without the Filterer's
        loop)."""
        if type(attrs.get(FILTERED_ATTR)) is Filtered:
            return True
        exc_info = attrs.get("exc_info")
        if exc_info and attrs["name"] in _SERVER_LOGGERS and was_logged(exc_info[1]):
            return False  # a server's second report of an exception we logged with its stack
        rename_own_attrs(attrs)
        mark = attrs[FILTERED_ATTR] = Filtered((len(attrs), 0))  # what follows: the filter's
        attrs["request_id"], attrs["trace_id"], attrs["span_id"], attrs["user_id"] = line_ids(
            attrs.get("request_id"),
            attrs.get("trace_id"),
            attrs.get("span_id"),
            attrs.get("user_id"),
        )
        bound = fields_var.get()
        if bound:
            attrs[BOUND_FIELDS_ATTR] = bound
        attrs["seq"] = next_seq()
        attrs["boot_id"] = boot_id()
        mark[1] = len(attrs)
        return True


def rename_own_attrs(fields: dict[str, Any]) -> None:
    """`seq`, `boot_id` and the bound-fields attribute passed by a caller (`extra={"seq": …}`)
    are fields like others: renamed `field_<name>` and moved last, before the filter's own."""
    if "seq" in fields or "boot_id" in fields or BOUND_FIELDS_ATTR in fields:
        for name in _OWN_ATTRS:
            if name in fields:
                fields["field_" + name] = fields.pop(name)


def line_ids(
    request_id: object, trace_id: object, span_id: object, user_id: object
) -> tuple[str | None, str | None, str | None, str | None]:
    """(request_id, trace_id, span_id, user_id) of a line: the values passed explicitly
    (`extra=`, keyword fields), validated like header values, else the context's. trace_id and
    span_id are the OpenTelemetry span's current where the line is written, else corrstack's."""
    if request_id is not None or trace_id is not None or span_id is not None:
        request_id = _explicit_id(request_id)
        trace_id = _explicit_id(trace_id)
        span_id = _explicit_id(span_id)
    connection = connection_var.get()
    if trace_id is None or span_id is None:
        span = current_span_ids()
        if span is None:
            trace_id = trace_id or connection.trace_id
            span_id = span_id or connection.span_id
        else:
            trace_id = trace_id or span[0]
            span_id = span_id or span[1]
    return (
        request_id or connection.request_id,
        trace_id,
        span_id,
        current_user_id() if user_id is None else clean_user_id(str(user_id)),
    )


def _explicit_id(value: object) -> str | None:
    """A valid ID passed on the record; an invalid one is dropped in favour of the context."""
    if value is None:
        return None
    text = str(value)
    return text if valid_id(text) else None


def mark_logged(error: BaseException) -> None:
    """Remember that corrstack already logged `error` with its stack."""
    with contextlib.suppress(AttributeError):  # exceptions with __slots__
        setattr(error, _LOGGED_MARK, True)


def was_logged(error: BaseException | None) -> bool:
    """Whether `mark_logged(error)` ran: its stack is in a line already."""
    return bool(getattr(error, _LOGGED_MARK, False))
