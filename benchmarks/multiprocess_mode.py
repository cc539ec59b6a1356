"""Per-request cost in prometheus_client's multiprocess mode: names, directories, checks.

A measurement named ``corrstack[multiprocess]`` builds the same app as ``corrstack`` in a
process started with PROMETHEUS_MULTIPROC_DIR set to a fresh temporary directory of its own
(prometheus_client picks its value class when it is imported, so the variable must be in the
child's environment before Python starts); the directory is removed once the process exits.
Every other measurement runs with the variable removed, so one inherited from the shell cannot
turn a single-process figure into a multiprocess one.

After warm-up the worker checks that the mode is really in use (`verify`), so a figure can never
silently be that of one process: metric values live in this process's `.db` files, `/metrics`
serves the sum prometheus_client's `MultiProcessCollector` reads from the directory, and for
corrstack its own multiprocess path is on (`multiprocess_directory()`, this worker's exemplar
file, an exemplar in the OpenMetrics scrape).
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from typing import Any, NoReturn

from starlette.types import ASGIApp, Message

from benchmarks.apps import ROUTE

ENV = "PROMETHEUS_MULTIPROC_DIR"
SUFFIX = "[multiprocess]"
# The apps measured in multiprocess mode: corrstack and the peer with multiprocess support.
APPS = ("corrstack", "prometheus_fastapi_instrumentator")
_OPENMETRICS = b"application/openmetrics-text; version=1.0.0"

_SampleKey = tuple[str, tuple[tuple[str, str], ...]]
_Samples = dict[_SampleKey, tuple[float, Any]]  # (value, exemplar or None)


def name(app: str) -> str:
    """The measurement name of `app` in multiprocess mode: ``corrstack[multiprocess]``."""
    return app + SUFFIX


NAMES = tuple(name(app) for app in APPS)


def split(measurement: str) -> tuple[str, bool]:
    """The app of a measurement name, and whether it runs in multiprocess mode."""
    if measurement.endswith(SUFFIX):
        return measurement[: -len(SUFFIX)], True
    return measurement, False


def child_environment(directory: str | None) -> dict[str, str]:
    """A measuring process's environment: ours, with ENV set to `directory` or removed."""
    environment = {key: value for key, value in os.environ.items() if key != ENV}
    if directory is not None:
        environment[ENV] = directory
    return environment


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """A fresh, empty directory for one measuring process, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="corrstack-bench-multiproc-") as directory:
        yield directory


def check_environment(measurement: str) -> None:
    """In the worker, before the app is built: the mode its name asks for is the one set."""
    multiprocess = split(measurement)[1]
    directory = os.environ.get(ENV)
    if multiprocess and not (directory and os.path.isdir(directory)):
        raise SystemExit(f"{measurement} needs {ENV} set to a directory before Python starts")
    if not multiprocess and directory is not None:
        raise SystemExit(f"{measurement} is a single-process measurement but {ENV} is set")


async def verify(measurement: str, app: ASGIApp, served: int) -> None:
    """In the worker, after warm-up: `served` requests of ROUTE went through multiprocess mode.

    Raises SystemExit naming what is missing.
    """
    from prometheus_client import values

    app_name, multiprocess = split(measurement)
    if not multiprocess:
        return
    directory = os.environ[ENV]
    if not getattr(values.ValueClass, "_multiprocess", False):
        _fail(measurement, "prometheus_client does not write its values to the shared files")
    pid = os.getpid()
    own = sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, f"*_{pid}.db")))
    if not own:
        _fail(measurement, f"no metrics file of this process (pid {pid}) in {directory}")
    body = await _scrape(app, openmetrics=app_name == "corrstack")
    scraped = _route_samples(body, openmetrics=app_name == "corrstack")
    expected = _route_samples(_collector_output(directory), openmetrics=False)
    if any(sample_name.endswith("_created") for sample_name, _ in scraped):
        _fail(measurement, "/metrics serves `_created` samples: a process registry, not files")
    if _values(scraped) != _values(expected):
        _fail(measurement, "/metrics does not serve what MultiProcessCollector reads from files")
    counts = [value for (sample_name, _), (value, _) in scraped.items() if _is_count(sample_name)]
    if counts != [float(served)]:
        _fail(measurement, f"/metrics counts {counts} requests of {ROUTE}, {served} were served")
    if app_name == "corrstack":
        _verify_corrstack(measurement, directory, scraped)


def _verify_corrstack(measurement: str, directory: str, scraped: _Samples) -> None:
    from instrumentation.exemplar_store import exemplar_path
    from instrumentation.multiprocess import multiprocess_directory

    if multiprocess_directory() != directory:
        _fail(measurement, "instrumentation.multiprocess.multiprocess_directory() is not set")
    if not os.path.isfile(exemplar_path(directory, os.getpid())):
        _fail(measurement, "this worker has no exemplar file")
    if not any(exemplar is not None for _, exemplar in scraped.values()):
        _fail(measurement, "the OpenMetrics scrape of the shared files carries no exemplar")


def _fail(measurement: str, reason: str) -> NoReturn:
    raise SystemExit(f"{measurement} is not measuring multiprocess mode: {reason}")


def _is_count(sample_name: str) -> bool:
    return sample_name == "http_requests_total"


async def _scrape(app: ASGIApp, *, openmetrics: bool) -> str:
    from benchmarks.request_worker import fresh_scope

    statuses: list[int] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {**fresh_scope(), "path": "/metrics", "raw_path": b"/metrics"}
    if openmetrics:  # as Prometheus asks; exemplars are only in OpenMetrics
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"accept"]
        scope["headers"].append((b"accept", _OPENMETRICS))
    await app(scope, receive, send)
    if statuses != [200]:
        raise SystemExit(f"/metrics answered {statuses}, not [200]")
    return b"".join(chunks).decode()


def _collector_output(directory: str) -> str:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def _route_samples(text: str, *, openmetrics: bool) -> _Samples:
    """Samples of ROUTE's series, keyed by name and labels: (value, exemplar)."""
    from prometheus_client import parser
    from prometheus_client.openmetrics import parser as openmetrics_parser

    families = (openmetrics_parser if openmetrics else parser).text_string_to_metric_families(text)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): (sample.value, sample.exemplar)
        for family in families
        for sample in family.samples
        if ROUTE in sample.labels.values()
    }


def _values(samples: _Samples) -> dict[_SampleKey, float]:
    return {key: value for key, (value, _) in samples.items()}
