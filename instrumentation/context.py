"""The request's correlation context, held in ContextVars.

Every value here is already validated and bounded: whatever reads them (log lines, exemplars,
outbound headers) can use them as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from instrumentation.sanitize import clean_field_value, clean_user_id
from instrumentation.tracing import current_span_ids

if TYPE_CHECKING:
    from instrumentation.runtime import Runtime

request_id_var: ContextVar[str | None] = ContextVar("corrstack_request_id", default=None)
trace_id_var: ContextVar[str | None] = ContextVar("corrstack_trace_id", default=None)
span_id_var: ContextVar[str | None] = ContextVar("corrstack_span_id", default=None)
user_id_var: ContextVar[str | None] = ContextVar("corrstack_user_id", default=None)
# Extra bound fields (order_id=…, tenant=…); an immutable snapshot, replaced on every bind.
fields_var: ContextVar[Mapping[str, Any]] = ContextVar(
    "corrstack_fields", default=MappingProxyType({})
)
# The ASGI scope of the request being served: path parameters appear in it once the router
# has matched, which is how handler log lines learn the path's user_id without a dependency.
scope_var: ContextVar[Mapping[str, Any] | None] = ContextVar("corrstack_scope", default=None)
# The runtime of the app whose request (or lifespan, or websocket) is being served, bound by its
# CorrelationMiddleware; None outside them. Read through `runtime.current_runtime()`.
runtime_var: ContextVar[Runtime | None] = ContextVar("corrstack_runtime", default=None)

_ID_VARS: dict[str, ContextVar[str | None]] = {
    "request_id": request_id_var,
    "trace_id": trace_id_var,
    "span_id": span_id_var,
}


def current_user_id() -> str | None:
    """The bound user_id, else the `user_id` path parameter of the routed request."""
    user_id = user_id_var.get()
    if user_id is not None:
        return user_id
    scope = scope_var.get()
    if scope is None:
        return None
    raw = scope.get("path_params", {}).get("user_id")
    return None if raw is None else clean_user_id(str(raw))


def current_context() -> dict[str, Any]:
    """A snapshot of the correlation context: IDs, user_id and extra bound fields (trace_id and
    span_id of the current OpenTelemetry span, when one is current)."""
    context: dict[str, Any] = dict(fields_var.get())
    for name, var in _ID_VARS.items():
        value = var.get()
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

    tokens = []
    extra: dict[str, Any] = {}
    for name, value in fields.items():
        var = _ID_VARS.get(name)
        if var is not None:
            tokens.append((var, var.set(None if value is None else clean_id(str(value)))))
        elif name == "user_id":
            cleaned = None if value is None else clean_user_id(str(value))
            tokens.append((user_id_var, user_id_var.set(cleaned)))
        else:
            extra[name] = clean_field_value(value)
    fields_token = fields_var.set({**fields_var.get(), **extra}) if extra else None
    try:
        yield
    finally:
        if fields_token is not None:
            fields_var.reset(fields_token)
        for var, token in reversed(tokens):
            var.reset(token)
