"""How a measuring subprocess hands its figures back: one prefixed JSON line on stdout.

The prefix lets the parent ignore anything else a library prints.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from time import perf_counter_ns, process_time_ns
from typing import Any

PREFIX = "CORRSTACK-BENCH-RESULT "
GC_REQUESTS = 10_000  # untimed requests of the GC and allocation count, unless told otherwise


@dataclass(frozen=True)
class Timing:
    """µs per operation of one timed batch: CPU time of the whole process, and wall time."""

    cpu_us: float
    wall_us: float

    @classmethod
    def per_operation(cls, cpu_start_ns: int, wall_start_ns: int, count: int) -> Timing:
        cpu = process_time_ns() - cpu_start_ns
        wall = perf_counter_ns() - wall_start_ns
        return cls(cpu / count / 1000, wall / count / 1000)


@dataclass(frozen=True)
class GcCount:
    """What an untimed loop of `requests` requests cost the garbage collector and the allocator:
    automatic collections per generation (0, 1, 2), the unreachable objects the collector found
    (in those and in one `gc.collect()` after), and the net change in allocated blocks."""

    requests: int
    collections: list[int]
    cyclic_garbage: int
    allocated_blocks: int

    def per_10000(self) -> dict[str, float]:
        scale = 10_000 / self.requests
        figures = {
            f"gc_gen{generation}_collections": count * scale
            for generation, count in enumerate(self.collections)
        }
        return {
            **figures,
            "gc_cyclic_garbage_objects": self.cyclic_garbage * scale,
            "net_allocated_blocks": self.allocated_blocks * scale,
        }


def emit(name: str, per_chunk: list[Timing], gc_count: GcCount | None = None) -> None:
    """Print the fastest timed batch for the parent to read.

    The headline is CPU time: on a shared machine other processes stretch wall time but not the
    CPU this process spends (threads included: span exporters, log queues). Within one process
    the fastest batch is the best estimate; the parent takes the median across processes.
    """
    result = {
        "name": name,
        "us": min(timing.cpu_us for timing in per_chunk),
        "wall_us": min(timing.wall_us for timing in per_chunk),
        "chunks": [timing.__dict__ for timing in per_chunk],
    }
    if gc_count is not None:
        result["gc_requests"] = gc_count.requests
        result["per_10000_requests"] = gc_count.per_10000()
    sys.stdout.write(PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(PREFIX):
            result: dict[str, Any] = json.loads(line[len(PREFIX) :])
            return result
    raise ValueError("the worker printed no result line")
