"""LogQL expressions the dashboards share.

IDs (`request_id`, `user_id`) are JSON fields of a log line, never Loki labels, so they are
matched in the pipeline:

>>> lines_with("request_id", "request_id", '{service=~".+"}')
'{service=~".+"} |= "$request_id" | json | request_id="$request_id", request_id!=""'
>>> lines_with_value("trace_id", "${__span.traceId}", '{service=~".+"}')
'{service=~".+"} |= "${__span.traceId}" | json | trace_id="${__span.traceId}"'
"""

from __future__ import annotations

from dashboards import config


def lines_with(field: str, variable: str, stream: str = config.EVERY_SERVICE_STREAM) -> str:
    """Log lines whose JSON `field` equals dashboard variable `variable` (never a Loki label).

    The line filter narrows the chunks Loki decodes; the json stage then matches the field
    exactly. An empty variable matches nothing, instead of every line without the field.
    """
    value = f"${variable}"
    return f'{stream} |= "{value}" | json | {field}="{value}", {field}!=""'


def lines_with_value(field: str, value: str, stream: str = config.EVERY_SERVICE_STREAM) -> str:
    """Log lines whose JSON `field` equals `value`, a link variable Grafana fills in before the
    query runs (`${__value.raw}`, `${__span.traceId}`), so it is never empty."""
    return f'{stream} |= "{value}" | json | {field}="{value}"'
