"""The app uvicorn serves in the HTTP measurement, with the garbage collector's work counted.

`uvicorn --factory benchmarks.served:app` builds the app `BENCH_APP` names (`benchmarks.apps`).
With `BENCH_GC_FILE` set, each SIGUSR1 makes the process write there, as JSON, the automatic
collections per generation since it started, the time they took and the longest one since the
previous signal: `http_load` signals before and after wrk, so the difference is what serving
the load cost the collector. A full collection stops every request in flight, so its length is
what the p99 of a run feels; the in-process loop cannot show it, as it has no server's timers
and connections.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.types import ASGIApp

from benchmarks.apps import build

APP_ENV = "BENCH_APP"
GC_FILE_ENV = "BENCH_GC_FILE"


class CollectorWatch:
    """Counts the collector's automatic runs per generation and the time each took."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0  # since the last snapshot
        self.snapshots = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.longest = max(self.longest, took)

    def snapshot(self) -> dict[str, Any]:
        self.snapshots += 1
        figures = {
            "snapshot": self.snapshots,
            "collections": list(self.collections),
            "seconds": list(self.seconds),
            "longest_seconds": self.longest,
        }
        self.longest = 0.0
        return figures


def app() -> ASGIApp:
    served = build(os.environ[APP_ENV])
    path = os.environ.get(GC_FILE_ENV)
    if path:
        watch = CollectorWatch()
        gc.callbacks.append(watch)

        def write(signum: int, frame: FrameType | None) -> None:
            temporary = Path(f"{path}.tmp")
            temporary.write_text(json.dumps(watch.snapshot()))
            temporary.replace(path)  # whole or not at all for the reader

        signal.signal(signal.SIGUSR1, write)
    return served
