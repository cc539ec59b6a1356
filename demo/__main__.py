"""`python -m demo`: run the demo services, the load and Prometheus/Alertmanager locally."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from demo.local import DEFAULT_PORTS, MAX_WORKERS, LocalOptions, run


def parse_args(argv: Sequence[str] | None = None) -> LocalOptions:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run the corrstack demo on 127.0.0.1 without Docker. Ctrl-C stops it.",
    )
    parser.add_argument("--duration", type=float, help="seconds to run; default: until Ctrl-C")
    parser.add_argument("--rate", type=float, default=5.0, help="load, requests per second")
    parser.add_argument("--users", type=int, default=50, help="simulated users")
    parser.add_argument(
        "--var-dir", type=Path, default=Path("var"), help="logs and data (default: ./var)"
    )
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{name}-port",
            type=int,
            help=f"default {port} if free, else any free port; 0: any free port",
        )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=(
            "uvicorn workers of each service (api, analysis); above 1 each service gets a "
            "temporary PROMETHEUS_MULTIPROC_DIR of its own, removed at exit (default 1)"
        ),
    )
    parser.add_argument(
        "--no-prometheus",
        dest="prometheus",
        action="store_false",
        help="do not start Prometheus or Alertmanager even when installed",
    )
    parser.add_argument(
        "--scrape-interval", help="override the Prometheus config's intervals, e.g. 1s"
    )
    options = parser.parse_args(argv)
    if not 0 < options.rate <= 500:
        parser.error("--rate must be in (0, 500]")
    if not 1 <= options.workers <= MAX_WORKERS:
        parser.error(f"--workers must be between 1 and {MAX_WORKERS}")
    return LocalOptions(
        var_dir=options.var_dir,
        duration=options.duration,
        rate=options.rate,
        users=options.users,
        api_port=options.api_port,
        analysis_port=options.analysis_port,
        prometheus_port=options.prometheus_port,
        alertmanager_port=options.alertmanager_port,
        redis_port=options.redis_port,
        worker_port=options.worker_port,
        prometheus=options.prometheus,
        scrape_interval=options.scrape_interval,
        workers=options.workers,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv), out=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
