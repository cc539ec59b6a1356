"""`python -m benchmarks`: every part, interleaved, in one run; JSON and markdown out.

python -m benchmarks --quick --out results.json     # the CI smoke run, about a minute
python -m benchmarks --out results.json --markdown results.md   # the full run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import multiprocess_mode
from benchmarks.apps import APPS
from benchmarks.http_load import load_app, wrk_available
from benchmarks.record_worker import FORMATTERS
from benchmarks.report import (
    BARE,
    http_summary,
    inprocess_summary,
    markdown,
    multiprocess_summary,
    records_summary,
    targets,
)
from benchmarks.rounds import choose_names, interleaved, run_request_worker, run_worker
from benchmarks.worker_result import GC_REQUESTS

PARTS = ("inprocess", "multiprocess", "http", "records")
_REQUEST_MODES = {"inprocess": "in-process", "multiprocess": "multiprocess mode"}
STDLIB_BASELINE = "stdlib"
_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus-client",
    "python-json-logger",
    "orjson",
    "asgi-correlation-id",
    "prometheus-fastapi-instrumentator",
    "starlette-exporter",
    "structlog",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-fastapi",
)


@dataclass(frozen=True)
class Settings:
    """Sizes of a run; `--quick` is the CI smoke run, the defaults the published one."""

    rounds: int
    requests: int
    records: int
    chunks: int
    http_rounds: int
    http_seconds: int
    # A record measurement takes well under a second, and the stdlib baseline's rounds scatter
    # by ±30 % on a shared VM: more of them for a steadier median.
    record_rounds: int
    gc_requests: int = GC_REQUESTS


FULL = Settings(
    rounds=7,
    requests=10_000,
    records=20_000,
    chunks=5,
    http_rounds=3,
    http_seconds=10,
    record_rounds=15,
)
QUICK = Settings(
    rounds=3,
    requests=2_000,
    records=5_000,
    chunks=5,
    http_rounds=1,
    http_seconds=2,
    record_rounds=3,
)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small counts, 2 s HTTP runs")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the markdown tables here")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)}")
    parser.add_argument(
        "--apps",
        help=f"comma-separated subset of {','.join(APPS)} (in-process and HTTP parts; the "
        f"multiprocess part measures {','.join([BARE, *multiprocess_mode.NAMES])})",
    )
    parser.add_argument("--formatters", help=f"comma-separated subset of {','.join(FORMATTERS)}")
    parser.add_argument("--rounds", type=int, help="per-request rounds")
    parser.add_argument(
        "--record-rounds", type=int, help=f"per-record rounds (default {FULL.record_rounds})"
    )
    parser.add_argument("--requests", type=int, help="timed requests per per-request measurement")
    parser.add_argument("--records", type=int, help="timed records per per-record measurement")
    parser.add_argument(
        "--gc-requests",
        type=int,
        help=f"untimed requests per per-request measurement counting GC collections and "
        f"allocated blocks, after the timed ones (default {GC_REQUESTS}; figures are scaled to "
        "per 10 000 requests)",
    )
    parser.add_argument("--http-rounds", type=int)
    parser.add_argument("--http-seconds", type=int, help="wrk duration per app and round")
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 1 when a target is missed"
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    return Settings(
        rounds=args.rounds or base.rounds,
        requests=args.requests or base.requests,
        records=args.records or base.records,
        chunks=base.chunks,
        http_rounds=args.http_rounds or base.http_rounds,
        http_seconds=args.http_seconds or base.http_seconds,
        record_rounds=args.record_rounds or base.record_rounds,
        gc_requests=args.gc_requests or base.gc_requests,
    )


def _meta(settings: Settings) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "settings": settings.__dict__,
        "versions": versions,
    }


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def run(argv: list[str]) -> dict[str, Any]:
    args = _arguments(argv)
    parts = choose_names(args.parts, dict.fromkeys(PARTS))
    apps = choose_names(args.apps, APPS)
    formatters = choose_names(args.formatters, FORMATTERS)
    settings = _settings(args)
    results: dict[str, Any] = {"meta": _meta(settings)}

    # The in-process and multiprocess-mode measurements share one interleaved set (and bare).
    single = apps if "inprocess" in parts else []
    multi = [BARE, *multiprocess_mode.NAMES] if "multiprocess" in parts else []
    requested = list(dict.fromkeys([*single, *multi]))
    if requested:
        modes = [m for part, m in _REQUEST_MODES.items() if part in parts]
        print(f"per request, {' and '.join(modes)}:", file=sys.stderr)
        rounds = interleaved(
            requested,
            settings.rounds,
            lambda name: run_request_worker(
                name, settings.requests, settings.chunks, settings.gc_requests
            ),
            _progress,
        )
        if single:
            results["inprocess"] = inprocess_summary({name: rounds[name] for name in single})
        if multi:
            results["multiprocess"] = multiprocess_summary(
                {name: rounds[name] for name in multi}, results.get("inprocess")
            )
    if "http" in parts:
        if not wrk_available():
            raise SystemExit("the http part needs `wrk` on PATH (apt-get install wrk)")
        print("over HTTP:", file=sys.stderr)
        http_rounds = interleaved(
            apps,
            settings.http_rounds,
            lambda app: load_app(app, settings.http_seconds).__dict__,
            _progress,
        )
        results["http"] = http_summary(http_rounds)
    if "records" in parts:
        print("per log record:", file=sys.stderr)
        record_rounds = interleaved(
            formatters,
            settings.record_rounds,
            lambda name: run_worker(
                "benchmarks.record_worker", name, settings.records, settings.chunks
            ),
            _progress,
        )
        results["records"] = records_summary(record_rounds, STDLIB_BASELINE)
    results["targets"] = [target.as_dict() for target in targets(results)]

    table = markdown(results)
    print(table)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    if args.fail_on_miss and any(t["verdict"] == "MISS" for t in results["targets"]):
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    run(sys.argv[1:])
