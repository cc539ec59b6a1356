"""The request's correlation context, held in ContextVars.

Every value here is already validated and bounded: whatever reads them (log lines, exemplars,
outbound headers) can use them as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from instrumentation.sanitize import clean_field_value, clean_user_id
from instrumentation.tracing import current_span_ids

if TYPE_CHECKING:
    from instrumentation.runtime import Runtime


class Connection(NamedTuple):
    """The correlation context of the connection (HTTP request, websocket) being served, bound
    as one value: a request sets and resets one ContextVar, not five."""

    # The runtime of the app whose request (or lifespan, or websocket) is being served, bound by
    # its CorrelationMiddleware; None outside them. Read through `runtime.current_runtime()`.
    runtime: Runtime | None = None
    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    # The ASGI scope of the request being served: path parameters appear in it once the router
    # has matched, which is how handler log lines learn the path's user_id without a dependency.
    scope: Mapping[str, Any] | None = None


NO_CONNECTION = Connection()
connection_var: ContextVar[Connection] = ContextVar("corrstack_connection", default=NO_CONNECTION)
user_id_var: ContextVar[str | None] = ContextVar("corrstack_user_id", default=None)
# Extra bound fields (order_id=…, tenant=…); an immutable snapshot, replaced on every bind.
fields_var: ContextVar[Mapping[str, Any]] = ContextVar(
    "corrstack_fields", default=MappingProxyType({})
)

_ID_NAMES = ("request_id", "trace_id", "span_id")


def current_user_id() -> str | None:
    """The bound user_id, else the `user_id` path parameter of the routed request."""
    user_id = user_id_var.get()
    if user_id is not None:
        return user_id
    scope = connection_var.get().scope
    if scope is None:
        return None
    raw = scope.get("path_params", {}).get("user_id")
    return None if raw is None else clean_user_id(str(raw))


def current_context() -> dict[str, Any]:
    """A snapshot of the correlation context: IDs, user_id and extra bound fields (trace_id and
    span_id of the current OpenTelemetry span, when one is current)."""
    context: dict[str, Any] = dict(fields_var.get())
    connection = connection_var.get()
    for name, value in zip(_ID_NAMES, connection[1:4], strict=True):
        if value is not None:
            context[name] = value
    span = current_span_ids()
    if span is not None:
        context["trace_id"], context["span_id"] = span
    user_id = current_user_id()
    if user_id is not None:
        context["user_id"] = user_id
    return context


@contextmanager
def bind_context(**fields: Any) -> Iterator[None]:
    """Bind fields to every log line written inside the block, then restore the old values.

    >>> with bind_context(user_id="u-42", order_id=7):
    ...     log.info("Order placed")   # carries user_id and order_id
    """
    from instrumentation.ids import clean_id  # late: ids imports nothing from here

    ids: dict[str, Any] = {}  # request_id, trace_id, span_id: validated, or None
    user_id: list[str | None] = []
    extra: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _ID_NAMES:
            ids[name] = None if value is None else clean_id(str(value))
        elif name == "user_id":
            user_id.append(None if value is None else clean_user_id(str(value)))
        else:
            extra[name] = clean_field_value(value)
    ids_token = connection_var.set(connection_var.get()._replace(**ids)) if ids else None
    user_token = user_id_var.set(user_id[0]) if user_id else None
    fields_token = fields_var.set({**fields_var.get(), **extra}) if extra else None
    try:
        yield
    finally:
        if fields_token is not None:
            fields_var.reset(fields_token)
        if user_token is not None:
            user_id_var.reset(user_token)
        if ids_token is not None:
            connection_var.reset(ids_token)
