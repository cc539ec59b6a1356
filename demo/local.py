"""`python -m demo`: both services, the load and whatever of Prometheus/Alertmanager is installed.

Everything listens on 127.0.0.1 and writes under one directory (default `./var`): JSON logs in
`log/<service>.log`, console output in `log/<name>.out`, Prometheus and Alertmanager data and
their rendered configs. SIGINT or SIGTERM stops every child by PID, the load first.

With `redis-server` on PATH and Celery installed, a Redis broker and the `worker` (a Celery
worker, demo/worker.py) start before the services, and `api` hands its "routine ready"
notifications to it; without them the demo runs without both and says so.

With `workers` above 1, each service runs `uvicorn --workers N` with a fresh metrics directory
of its own (PROMETHEUS_MULTIPROC_DIR, a temporary directory removed when the demo stops), so
its `/metrics`, answered by any worker, serves the sums over all of them with exemplars.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from demo import stack_config
from demo.children import Child, Children
from instrumentation.multiprocess import ENV as MULTIPROC_ENV
from instrumentation.multiprocess import process_alive, worker_pids

ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
STARTUP_TIMEOUT_S = 30.0
SERVICES = ("analysis", "api")  # in start order
SHOWN_SERVICES = ("api", "analysis")
DEFAULT_PORTS = {
    "api": 8000,
    "analysis": 8001,
    "prometheus": 9090,
    "alertmanager": 9093,
    "redis": 6379,
    "worker": 8002,  # the Celery worker's /metrics
}
# uvicorn workers per service: each is a full Python process (~60 MiB), so keep it a demo.
MAX_WORKERS = 16


class StartupError(RuntimeError):
    """A part that must run did not come up."""


class Stopped(Exception):
    """SIGINT or SIGTERM arrived while starting up."""


@dataclass(frozen=True)
class LocalOptions:
    var_dir: Path = Path("var")
    duration: float | None = None
    rate: float = 5.0
    users: int = 50
    # None: the usual port if it is free, else any free one; 0: any free port.
    api_port: int | None = None
    analysis_port: int | None = None
    prometheus_port: int | None = None
    alertmanager_port: int | None = None
    redis_port: int | None = None
    worker_port: int | None = None
    prometheus: bool = True
    scrape_interval: str | None = None
    environment: str = "local"
    # uvicorn workers of each service (api, analysis); above 1, in prometheus_client's
    # multiprocess mode with a metrics directory of each service's own.
    workers: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}, not {self.workers}")


def choose_port(requested: int | None, preferred: int) -> int:
    """`requested` as given; 0 means any free port; None prefers `preferred` when it is free."""
    if requested:
        return requested
    if requested is None and _bindable(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LocalStack:
    """Starts the parts in dependency order; `children` stops them in reverse."""

    def __init__(self, options: LocalOptions, stop: threading.Event) -> None:
        self.options = options
        self.stop = stop
        self.var_dir = options.var_dir.resolve()
        self.log_dir = self.var_dir / "log"
        self.children = Children()
        self.urls: dict[str, str] = {}
        self.notes: list[str] = []
        self.metrics_dirs: dict[str, Path] = {}
        self.broker_url: str | None = None

    def url(self, name: str) -> str:
        return self.urls[name]

    def start_services(self) -> None:
        ports = {
            "analysis": choose_port(self.options.analysis_port, DEFAULT_PORTS["analysis"]),
            "api": choose_port(self.options.api_port, DEFAULT_PORTS["api"]),
        }
        for service in SERVICES:
            port = ports[service]
            self.urls[service] = f"http://127.0.0.1:{port}"
            env = {
                "SERVICE_NAME": service,
                "ENVIRONMENT": self.options.environment,
                "LOG_FILE": str(self.log_dir / f"{service}.log"),
                # The file is JSON either way; the console copy (<name>.out) is for reading.
                "LOG_FORMAT": os.environ.get("LOG_FORMAT") or "console",
                "ANALYSIS_URL": f"http://127.0.0.1:{ports['analysis']}",
            }
            if service == "api" and self.broker_url:
                env["CELERY_BROKER_URL"] = self.broker_url
            if "alertmanager" in self.urls:
                env["ALERTMANAGER_URL"] = self.urls["alertmanager"]
            metrics_dir = self._metrics_dir(service)
            if metrics_dir is not None:
                env[MULTIPROC_ENV] = str(metrics_dir)
            cmd = service_command(service, port, self.options.workers)
            child = self._start(service, cmd, env=env)
            self._wait_ready(child, f"{self.urls[service]}/health")
            if metrics_dir is not None:
                self._wait_workers(child, metrics_dir, self.options.workers)

    def _metrics_dir(self, service: str) -> Path | None:
        """A fresh, empty metrics directory for `service`'s workers; None for one worker."""
        if self.options.workers == 1:
            return None
        directory = Path(tempfile.mkdtemp(prefix=f"corrstack-demo-{service}-metrics-"))
        self.metrics_dirs[service] = directory
        return directory

    def remove_metrics_dirs(self) -> list[Path]:
        """Remove the services' metrics directories (their servers have stopped)."""
        removed = []
        while self.metrics_dirs:
            _, directory = self.metrics_dirs.popitem()
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
        return removed

    def start_broker_and_worker(self) -> None:
        """Redis and the Celery worker, when both can run; else a note and neither."""
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            self.notes.append("redis-server not on PATH: no broker and no worker")
            return
        if importlib.util.find_spec("celery") is None:
            self.notes.append("Celery not installed (corrstack[celery]): no broker and no worker")
            return
        port = choose_port(self.options.redis_port, DEFAULT_PORTS["redis"])
        cmd = [redis_server, "--port", str(port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        redis = self._start("redis", cmd)
        self._wait_redis(redis, port)
        broker = f"redis://127.0.0.1:{port}/0"
        self.urls["redis"] = broker

        metrics_port = choose_port(self.options.worker_port, DEFAULT_PORTS["worker"])
        env = {
            "SERVICE_NAME": "worker",
            "ENVIRONMENT": self.options.environment,
            "LOG_FILE": str(self.log_dir / "worker.log"),
            "LOG_FORMAT": os.environ.get("LOG_FORMAT") or "console",
            "CELERY_BROKER_URL": broker,
            "WORKER_METRICS_PORT": str(metrics_port),
            "WORKER_METRICS_ADDR": "127.0.0.1",
        }
        worker = self._start("worker", worker_command(), env=env)
        url = f"http://127.0.0.1:{metrics_port}"
        # Its metrics server starts on worker_init, as the worker boots; tasks published
        # before it consumes wait in Redis.
        self._wait_ready(worker, f"{url}/metrics")
        self.urls["worker"] = url
        self.broker_url = broker

    def _wait_redis(self, child: Child, port: int) -> None:
        self._wait_for(
            child,
            lambda: redis_pong(port),
            f"redis not answering PING on {port} in {STARTUP_TIMEOUT_S:g} s",
            interval=0.1,
        )

    def start_alert_receiver(self) -> None:
        """The stack's webhook receiver: Alertmanager's notifications as JSON log lines."""
        port = choose_port(None, 9095)
        url = f"http://127.0.0.1:{port}"
        env = {
            "SERVICE_NAME": "webhook-receiver",
            "ENVIRONMENT": self.options.environment,
            "LOG_FILE": str(self.log_dir / "webhook-receiver.log"),
        }
        cmd = [sys.executable, "-m", "uvicorn", "demo.alert_receiver:app"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        child = self._start("webhook-receiver", cmd, env=env)
        self._wait_ready(child, f"{url}/health")
        self.urls["webhook-receiver"] = url

    def start_alertmanager(self) -> None:
        binary = next((b for b in ALERTMANAGER_BINARIES if shutil.which(b)), None)
        if binary is None:
            self.notes.append("Alertmanager not on PATH: alerts stay in Prometheus")
            return
        port = choose_port(self.options.alertmanager_port, DEFAULT_PORTS["alertmanager"])
        url = f"http://127.0.0.1:{port}"
        source = stack_config.load_config(
            stack_config.ALERTMANAGER_CONFIG, stack_config.builtin_alertmanager_config(), self.notes
        )
        rendered = stack_config.render_alertmanager_config(
            source, self.urls.get("webhook-receiver")
        )
        config = self._write_config("alertmanager", rendered)
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.path={self.var_dir / 'alertmanager' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={url}",
            "--cluster.listen-address=",  # no gossip port on 0.0.0.0
        ]
        child = self._start("alertmanager", cmd)
        try:
            self._wait_ready(child, f"{url}/-/ready")
        except StartupError as exc:
            # Optional: the demo is still useful without it.
            self.children.stop(child)
            self.notes.append(f"Alertmanager did not start ({exc}): continuing without it")
            return
        self.urls["alertmanager"] = url

    def start_prometheus(self) -> None:
        if shutil.which("prometheus") is None:
            self.notes.append("prometheus not on PATH: metrics only at each service's /metrics")
            return
        port = choose_port(self.options.prometheus_port, DEFAULT_PORTS["prometheus"])
        url = f"http://127.0.0.1:{port}"
        hosts = {
            name: u.removeprefix("http://") for name, u in self.urls.items() if name != "redis"
        }
        hosts["prometheus"] = f"127.0.0.1:{port}"
        source = stack_config.load_config(
            stack_config.PROMETHEUS_CONFIG, stack_config.builtin_prometheus_config(), self.notes
        )
        rendered = stack_config.render_prometheus_config(
            source,
            hosts,
            scrape_interval=self.options.scrape_interval,
            environment=self.options.environment,
            notes=self.notes,
        )
        config = self._write_config("prometheus", rendered)
        cmd = [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={self.var_dir / 'prometheus' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={url}",
            "--enable-feature=exemplar-storage",
        ]
        self._wait_ready(self._start("prometheus", cmd), f"{url}/-/ready")
        self.urls["prometheus"] = url

    def start_load(self) -> None:
        cmd = [sys.executable, "-m", "demo.loadgen", "--target", self.url("api")]
        cmd += ["--rate", str(self.options.rate), "--users", str(self.options.users)]
        env = {
            "SERVICE_NAME": "loadgen",
            "ENVIRONMENT": self.options.environment,
            "LOG_FILE": str(self.log_dir / "loadgen.log"),
            "LOG_FORMAT": os.environ.get("LOG_FORMAT") or "console",
        }
        self._start("loadgen", cmd, env=env)

    def _start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        output = self.log_dir / f"{name}.out"
        return self.children.start(name, cmd, output=output, env=env, cwd=stack_config.REPO_ROOT)

    def _write_config(self, name: str, config: dict[str, object]) -> Path:
        # JSON is YAML, and needs no YAML writer.
        path = self.var_dir / name / f"{name}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def _wait_ready(self, child: Child, url: str) -> None:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        self._wait_for(child, ready, f"{child.name} not ready at {url} in {STARTUP_TIMEOUT_S:g} s")

    def _wait_workers(self, child: Child, directory: Path, workers: int) -> None:
        """Until `workers` live processes have their metrics files in `directory`: each worker
        allocates them when the app is created, before it serves."""
        self._wait_for(
            child,
            lambda: len(live_workers(directory)) >= workers,
            f"{child.name}: fewer than {workers} workers started in {STARTUP_TIMEOUT_S:g} s, "
            f"see {child.output}",
        )

    def _wait_for(
        self, child: Child, ready: Callable[[], bool], failure: str, interval: float = 0.2
    ) -> None:
        """Until `ready()`, failing with `failure` after STARTUP_TIMEOUT_S, or at once when
        `child` exits or the demo is stopped."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.stop.is_set():
                raise Stopped
            if child.exited() is not None:
                raise StartupError(f"{child.name} exited with {child.exited()}, see {child.output}")
            if ready():
                return
            self.stop.wait(interval)
        raise StartupError(failure)

    def describe(self) -> Iterator[str]:
        yield "corrstack demo running on 127.0.0.1 (Ctrl-C stops everything):"
        for name in SHOWN:
            if name in self.urls:
                logs_itself = name in SERVICES or name in ("webhook-receiver", "worker")
                where = f"{self.log_dir / name}.log" if logs_itself else f"{self.log_dir}/"
                workers = workers_text(self.options.workers) if name in SERVICES else ""
                yield f"  {name:<17} {self.urls[name]:<24}  {workers:<10} logs {where}"
        load = f"{self.options.rate:g} req/s, {self.options.users} users"
        yield f"  {'loadgen':<17} {load:<24}  {'':<10} logs {self.log_dir / 'loadgen'}.log"
        for service in SHOWN_SERVICES:
            if service in self.metrics_dirs:
                yield (
                    f"  {service}'s {self.options.workers} workers share "
                    f"{MULTIPROC_ENV}={self.metrics_dirs[service]} (removed at exit)"
                )
        yield "Follow one request through both services:"
        yield (
            f"  curl -s -X POST -H 'X-Correlation-ID: try-me-1' -H 'Content-Type: application/json'"
            f" -d '{{}}' {self.url('api')}/api/user/user-0042/analysis"
        )
        yield f"  grep -h try-me-1 {self.log_dir}/api.log {self.log_dir}/analysis.log"
        if "worker" in self.urls:
            yield "A routine hands its notification to the worker, under the same request_id:"
            yield (
                f"  curl -s -X POST -H 'X-Correlation-ID: try-me-2' -H 'Content-Type: "
                f'application/json\' -d \'{{"goal": "mobility"}}\' '
                f"{self.url('api')}/api/user/user-0042/routine/generate"
            )
            yield f"  grep -h try-me-2 {self.log_dir}/api.log {self.log_dir}/worker.log"


SHOWN = ("api", "analysis", "worker", "redis", "prometheus", "alertmanager", "webhook-receiver")


def worker_command() -> list[str]:
    """The demo's Celery worker: a threads pool, no gossip/mingle/heartbeat (one worker)."""
    return [
        sys.executable, "-m", "celery", "-A", "demo.worker", "worker",
        "--pool=threads", "--concurrency=4", "--loglevel=INFO", "--hostname=worker@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def redis_pong(port: int, timeout: float = 1.0) -> bool:
    """Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def service_command(service: str, port: int, workers: int = 1) -> list[str]:
    """uvicorn serving `demo.<service>:app` on 127.0.0.1:`port`; `--workers` only above 1."""
    cmd = [sys.executable, "-m", "uvicorn", f"demo.{service}:app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return cmd


def workers_text(workers: int) -> str:
    return "1 worker" if workers == 1 else f"{workers} workers"


def live_workers(directory: Path) -> set[int]:
    """The live processes that have metrics files in `directory`."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return set()
    return {pid for pid in worker_pids(names) if process_alive(pid)}


def run(options: LocalOptions, out: Callable[[str], None] = print) -> int:
    """Run until `options.duration` passes or SIGINT/SIGTERM; 0 when everything stopped cleanly."""
    stop = threading.Event()
    stack = LocalStack(options, stop)
    code = 0
    with _stop_on_signals(stop):
        try:
            # Alertmanager first: the services' error tracker posts pattern alerts to it.
            if options.prometheus:
                stack.start_alert_receiver()
                stack.start_alertmanager()
            stack.start_broker_and_worker()
            stack.start_services()
            if options.prometheus:
                stack.start_prometheus()
            else:
                stack.notes.append("Prometheus and Alertmanager skipped (--no-prometheus)")
            stack.start_load()
            for note in stack.notes:
                out(f"note: {note}")
            for line in stack.describe():
                out(line)
            code = _supervise(stack, options.duration, out)
        except Stopped:
            out("Stopped during startup")
        except StartupError as exc:
            out(f"error: {exc}")
            code = 1
        finally:
            codes = stack.children.stop_all()
            failed = {name: c for name, c in codes.items() if c not in (0, -signal.SIGTERM)}
            if failed:
                out(f"Stopped; unclean exits: {failed}")
                code = code or 1
            else:
                out(f"Stopped {', '.join(codes) or 'nothing'}")
            # After the services stopped: no worker writes there any more.
            removed = stack.remove_metrics_dirs()
            if removed:
                out(f"Removed the metrics directories {', '.join(map(str, removed))}")
    return code


def _supervise(stack: LocalStack, duration: float | None, out: Callable[[str], None]) -> int:
    deadline = None if duration is None else time.monotonic() + duration
    while not stack.stop.wait(0.5):
        if deadline is not None and time.monotonic() >= deadline:
            out(f"Duration of {duration:g} s reached")
            return 0
        child = stack.children.first_exited()
        if child is not None:
            out(f"error: {child.name} exited with {child.exited()}, see {child.output}")
            return 1
    out("Signal received, stopping")
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
