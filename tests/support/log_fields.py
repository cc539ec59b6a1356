"""What every corrstack log line must carry (DESIGN.md)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from instrumentation.handlers import BackgroundWriter

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


# Longer than a writer waits between two writes under load.
QUIET_SECONDS = 2 * BackgroundWriter.write_interval + 0.1


def settled_records(
    path: Path, quiet: float = QUIET_SECONDS, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The JSON lines of a log file another process writes, once it has stopped growing.

    corrstack writes lines from a writer thread, under load up to `write_interval` after they
    were logged, so a test reads the file when its size has held for `quiet` seconds (polled,
    bounded), and only whole lines.
    """
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = path.stat().st_size if path.exists() else 0
        if current != size:
            size, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.01)
    text = path.read_text() if path.exists() else ""
    whole = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line]
