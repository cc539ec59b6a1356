"""Real Prometheus, Alertmanager and uvicorn processes for integration tests.

Each runs on 127.0.0.1 on a free port, in its own session, with its data in a temp dir, and is
stopped by PID when the `with` block ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import (
    free_port,
    running,
    stop,
    uvicorn_cmd,
    wait_http_ok,
    wait_until,
)

ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
# Servers started here, by URL, so a test can stop one mid-run (by PID) to simulate an outage.
_servers: dict[str, subprocess.Popen[bytes]] = {}


def stop_server(url: str) -> None:
    """Stop the Prometheus or Alertmanager serving `url` now, before its block ends."""
    stop(_servers[url])


@contextmanager
def _ready_server(cmd: list[str], url: str, log_path: Path) -> Iterator[None]:
    """Run `cmd` until the block ends; ready once `url/-/ready` answers 200."""
    with running(cmd, log_path=log_path) as process:
        _servers[url] = process
        try:
            wait_http_ok(f"{url}/-/ready", timeout=30)
            yield
        finally:
            del _servers[url]


def alertmanager_binary() -> str:
    for name in ALERTMANAGER_BINARIES:
        if shutil.which(name):
            return name
    raise FileNotFoundError("neither prometheus-alertmanager nor alertmanager is on PATH")


@dataclass
class App:
    url: str
    log_file: Path
    process_log: Path


@contextmanager
def serve_app(
    tmp_path: Path, app: str, *, service: str, env: Mapping[str, str] | None = None
) -> Iterator[App]:
    """uvicorn serving `module:attr`, logging JSON to a file in `tmp_path`."""
    port = free_port()
    log_file = tmp_path / f"{service}.log"
    process_log = tmp_path / f"{service}.uvicorn.out"
    environment = {
        "SERVICE_NAME": service,
        "ENVIRONMENT": "test",
        "LOG_FILE": str(log_file),
        **(env or {}),
    }
    with running(uvicorn_cmd(app, port), log_path=process_log, env=environment):
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/metrics", timeout=30)
        yield App(url, log_file, process_log)


@contextmanager
def prometheus(
    tmp_path: Path,
    targets: Mapping[str, Sequence[str]],
    *,
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    scrape_interval: str = "1s",
) -> Iterator[str]:
    """Prometheus with exemplar storage scraping `targets` ({service: ["host:port", ...]})."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "storage": {"exemplars": {"max_exemplars": 100000}},
        "scrape_configs": [
            {
                "job_name": service,
                "static_configs": [{"targets": list(hosts), "labels": {"service": service}}],
            }
            for service, hosts in targets.items()
        ],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager_url:
        host = alertmanager_url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    data = tmp_path / "prometheus-data"
    cmd = [
        "prometheus",
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        "--enable-feature=exemplar-storage",
        "--rules.alert.resend-delay=1s",
    ]
    with _ready_server(cmd, url, tmp_path / "prometheus.out"):
        yield url


def wait_for_scrape(prometheus_url: str, service: str, timeout: float = 60.0) -> None:
    """Poll until Prometheus has scraped `service` at least once (the first comes ~5 s late)."""

    def scraped() -> bool:
        result = query(prometheus_url, f'up{{service="{service}"}} == 1')
        return bool(result)

    wait_until(scraped, timeout, interval=0.5, what=f"first scrape of {service}")


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


@contextmanager
def alertmanager(tmp_path: Path, config: Mapping[str, Any]) -> Iterator[str]:
    """A real Alertmanager on loopback (gossip off) with `config`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(dict(config)))
    cmd = [
        alertmanager_binary(),
        f"--config.file={config_path}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        "--cluster.listen-address=",
    ]
    with _ready_server(cmd, url, tmp_path / "alertmanager.out"):
        yield url


@dataclass
class WebhookReceiver:
    """An HTTP endpoint on loopback collecting what Alertmanager delivers."""

    url: str
    payloads: list[Any] = field(default_factory=list)

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts received: from Alertmanager's webhook payloads (`{"alerts": [...]}`) or
        posted straight as Alertmanager's API takes them (a JSON list)."""
        return [
            alert
            for payload in self.payloads
            for alert in (payload if isinstance(payload, list) else payload.get("alerts", []))
        ]

    def text(self) -> str:
        """Everything received, as JSON text (to look for what must never be sent)."""
        return json.dumps(self.payloads)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1 keeping the JSON of every POST, whatever its path."""
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hook", received)
    finally:
        server.shutdown()
        server.server_close()
