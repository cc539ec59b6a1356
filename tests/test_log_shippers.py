"""The log path's configs: Loki, promtail and its Alloy replacement.

None of them has a binary on this machine, so their files are parsed and held to the contract
in DESIGN.md: only the service, environment and level labels, fields that real corrstack log
lines carry, and paths and hosts shared with the compose file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.stack_files import (
    ROOT,
    SAMPLE_IDS,
    bind_target,
    load_yaml,
    real_log_line,
    resolved_compose,
)

LOKI_CONFIG = ROOT / "loki-config.yaml"
PROMTAIL_CONFIG = ROOT / "config" / "promtail" / "promtail.yml"
ALLOY_CONFIG = ROOT / "config" / "alloy" / "config.alloy"
LOKI_LABELS = {"service", "environment", "level"}


def test_loki_config_has_retention_tsdb_v13_and_a_ruler_wired_to_compose(tmp_path: Path) -> None:
    config = load_yaml(LOKI_CONFIG)
    assert config["auth_enabled"] is False
    [schema] = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == (
        "tsdb",
        "v13",
        "filesystem",
    )
    assert schema["index"]["period"] == "24h"  # retention works on daily tables
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"
    assert "shared_store" not in compactor  # removed in Loki 3: the config would not load
    assert config["limits_config"]["retention_period"]
    assert config["limits_config"]["ingestion_rate_mb"] > 0

    services = resolved_compose(tmp_path)["services"]
    ruler = config["ruler"]
    assert urlsplit(ruler["alertmanager_url"]).hostname in services
    assert ruler["storage"]["type"] == "local"
    # With auth off Loki is tenant "fake": rules must sit in <directory>/fake/.
    rules_target = bind_target(
        services["loki"], tmp_path, ROOT / "alert_rules" / "generated" / "loki"
    )
    assert rules_target == ruler["storage"]["local"]["directory"] + "/fake"
    assert bind_target(services["loki"], tmp_path, LOKI_CONFIG) in services["loki"]["command"][0]


def _promtail_stages() -> dict[str, Any]:
    [job] = load_yaml(PROMTAIL_CONFIG)["scrape_configs"]
    stages: dict[str, Any] = {}
    for stage in job["pipeline_stages"]:
        stages.update(stage)
    return stages


def test_promtail_makes_only_service_environment_and_level_labels() -> None:
    [job] = load_yaml(PROMTAIL_CONFIG)["scrape_configs"]
    [static] = job["static_configs"]
    assert static["labels"] == {"__path__": "/var/log/corrstack/*.log"}
    stages = _promtail_stages()
    assert set(stages["labels"]) == LOKI_LABELS
    assert set(stages) == {"json", "timestamp", "labels"}  # no other stage adds labels
    assert stages["timestamp"] == {"source": "timestamp", "format": "RFC3339Nano"}


def test_promtail_reads_fields_that_a_real_log_line_has(log_capture: Any) -> None:
    _, record = real_log_line(log_capture, SAMPLE_IDS[0])
    expressions = _promtail_stages()["json"]["expressions"]
    assert {expressions[label] for label in LOKI_LABELS} <= set(record)
    assert all(record[expressions[label]] for label in LOKI_LABELS), record
    # RFC 3339 in UTC with a fractional part: Go's RFC3339Nano layout parses it.
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)",
        record[expressions["timestamp"]],
    )


def _alloy_block(name: str, text: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)}\s*\{{(.*?)^\s*\}}", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {name} block in config.alloy"
    return match.group(1)


def test_alloy_pipeline_matches_promtail() -> None:
    text = ALLOY_CONFIG.read_text()
    promtail = load_yaml(PROMTAIL_CONFIG)
    assert '"__path__" = "/var/log/corrstack/*.log"' in _alloy_block(
        'local.file_match "corrstack"', text
    )
    labels = _alloy_block("stage.labels", text)
    assert set(re.findall(r"^\s*(\w+)\s*=\s*\"\"", labels, re.MULTILINE)) == LOKI_LABELS
    json_stage = _alloy_block("stage.json", text)
    pairs = dict(re.findall(r"^\s*(\w+)\s*=\s*\"(\w+)\",?$", json_stage, re.MULTILINE))
    assert pairs == _promtail_stages()["json"]["expressions"]
    timestamp = _alloy_block("stage.timestamp", text)
    assert 'source = "timestamp"' in timestamp
    assert 'format = "RFC3339Nano"' in timestamp
    assert f'url = "{promtail["clients"][0]["url"]}"' in _alloy_block("endpoint", text)
    assert len(re.findall(r"^\s*stage\.\w+", text, re.MULTILINE)) == 3
