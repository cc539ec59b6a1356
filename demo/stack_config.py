"""The compose stack's Prometheus and Alertmanager configs, rendered for a run on 127.0.0.1.

Compose names its containers (`api:8000`, `alertmanager:9093`) and mounts the generated rules at
`/etc/prometheus/rules/`; here the same files are rewritten to loopback addresses and the
repository's paths. Targets of containers that do not run locally (Loki, Grafana…) are dropped,
and every change that is not a plain rename is reported as a note.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = REPO_ROOT / "config" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "config" / "alertmanager" / "alertmanager.yml"
RULES_DIR = REPO_ROOT / "alert_rules" / "generated" / "prometheus"
# Where compose mounts things inside the containers, and what they are here.
CONTAINER_PATHS = {
    "/etc/prometheus/rules": RULES_DIR,
    "/etc/alertmanager": ALERTMANAGER_CONFIG.parent,
}
# Inside the Prometheus container, localhost is Prometheus itself.
_SELF_HOSTS = ("localhost", "127.0.0.1", "prometheus")


def builtin_prometheus_config() -> dict[str, Any]:
    """The equivalent of config/prometheus/prometheus.yml, for when that file is absent."""
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "storage": {"exemplars": {"max_exemplars": 100000}},
        "scrape_configs": [
            {
                "job_name": service,
                "static_configs": [{"targets": [target], "labels": {"service": service}}],
            }
            for service, target in (("api", "api:8000"), ("analysis", "analysis:8001"))
        ],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
        "rule_files": ["/etc/prometheus/rules/*.yml"],
    }


def builtin_alertmanager_config() -> dict[str, Any]:
    """Alerts are grouped and shown in the Alertmanager UI; nothing is sent anywhere."""
    return {
        "route": {"receiver": "local", "group_by": ["alertname", "service"]},
        "receivers": [{"name": "local"}],
    }


def load_config(path: Path, builtin: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """`path` parsed as YAML; the built-in equivalent (with a note) when it cannot be read."""
    if not path.exists():
        notes.append(f"{_shown(path)} not found: using the built-in equivalent")
        return builtin
    try:
        import yaml  # PyYAML: a test dependency, optional for the local run
    except ImportError:
        notes.append(f"PyYAML missing, cannot read {_shown(path)}: using the built-in equivalent")
        return builtin
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a YAML mapping")
    return loaded


def render_prometheus_config(
    config: Mapping[str, Any],
    hosts: Mapping[str, str],
    *,
    scrape_interval: str | None = None,
    environment: str | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """`config` with container targets replaced by `hosts` ({"api": "127.0.0.1:8000", ...}).

    `hosts["prometheus"]` is Prometheus's own address; without `hosts["alertmanager"]` the
    alerting section is dropped. `scrape_interval` overrides the global intervals;
    `environment` replaces the targets' `environment` label, so metrics and log lines agree.
    """
    notes = notes if notes is not None else []
    rendered = copy.deepcopy(dict(config))
    scrape_configs = []
    for job in rendered.get("scrape_configs") or []:
        _rewrite_static_configs(job, hosts, f"scrape job {job.get('job_name')!r}", notes)
        if environment:
            for static in job.get("static_configs") or []:
                static.setdefault("labels", {})["environment"] = environment
        if job.get("static_configs"):
            scrape_configs.append(job)
        else:
            notes.append(f"scrape job {job.get('job_name')!r} dropped: nothing of it runs here")
    rendered["scrape_configs"] = scrape_configs

    alerting = rendered.get("alerting")
    if alerting and "alertmanager" in hosts:
        for alertmanager in alerting.get("alertmanagers") or []:
            _rewrite_static_configs(alertmanager, hosts, "alerting", notes)
    elif alerting:
        del rendered["alerting"]
        notes.append("alerting dropped: no Alertmanager runs here")

    rendered["rule_files"] = [_local_path(p) for p in rendered.get("rule_files") or []]
    if scrape_interval:
        # The timeout may not exceed the interval; jobs' own intervals would win over global.
        intervals = ("scrape_interval", "scrape_timeout", "evaluation_interval")
        rendered["global"] = {
            **(rendered.get("global") or {}),
            **dict.fromkeys(intervals, scrape_interval),
        }
        for job in scrape_configs:
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
    return rendered


WEBHOOK_RECEIVER = "http://webhook-receiver:9095"


def render_alertmanager_config(
    config: Mapping[str, Any], webhook_receiver: str | None = None
) -> dict[str, Any]:
    """`config` with container paths (templates) pointing into the repository, and the stack's
    webhook receiver replaced by `webhook_receiver` (a local one) when given."""
    rendered = copy.deepcopy(dict(config))
    if rendered.get("templates"):
        rendered["templates"] = [_local_path(p) for p in rendered["templates"]]
    if webhook_receiver:
        for receiver in rendered.get("receivers") or []:
            for webhook in receiver.get("webhook_configs") or []:
                url = str(webhook.get("url", ""))
                if url.startswith(WEBHOOK_RECEIVER):
                    webhook["url"] = webhook_receiver + url[len(WEBHOOK_RECEIVER) :]
    return rendered


def _rewrite_static_configs(
    section: dict[str, Any], hosts: Mapping[str, str], where: str, notes: list[str]
) -> None:
    kept = []
    for static in section.get("static_configs") or []:
        targets = []
        for target in static.get("targets") or []:
            local = _local_target(str(target), hosts)
            if local is None:
                notes.append(f"{where}: target {target} dropped (not running here)")
            else:
                targets.append(local)
        if targets:
            kept.append({**static, "targets": targets})
    section["static_configs"] = kept
    for key in [k for k in section if k.endswith("_sd_configs")]:
        notes.append(f"{where}: {key} dropped (container discovery)")
        del section[key]


def _local_target(target: str, hosts: Mapping[str, str]) -> str | None:
    host = target.rsplit(":", 1)[0]
    if host in _SELF_HOSTS:
        return hosts.get("prometheus")
    return hosts.get(host)


def _local_path(path: str) -> str:
    for container, local in CONTAINER_PATHS.items():
        if path == container or path.startswith(container + "/"):
            return str(local) + path[len(container) :]
    return path


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
