"""How a measuring subprocess hands its figure back: one prefixed JSON line on stdout.

The prefix lets the parent ignore anything else a library prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PREFIX = "CORRSTACK-BENCH-RESULT "


def emit(name: str, per_chunk_us: list[float]) -> None:
    """Print the fastest timed chunk (µs per operation) for the parent to read.

    Other load on the machine only ever adds time, so within one process the fastest chunk is
    the best estimate; the parent takes the median across processes.
    """
    result = {"name": name, "us": min(per_chunk_us), "chunks_us": per_chunk_us}
    sys.stdout.write(PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(PREFIX):
            result: dict[str, Any] = json.loads(line[len(PREFIX) :])
            return result
    raise ValueError("the worker printed no result line")
