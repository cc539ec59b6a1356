"""What every corrstack log line must carry (DESIGN.md)."""

from __future__ import annotations

import re

DESIGN_FIELDS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "message",
        "service",
        "environment",
        "request_id",
        "trace_id",
        "span_id",
        "module",
        "function",
        "line",
    }
)
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
