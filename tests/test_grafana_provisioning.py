"""Grafana provisioning: datasources, the exemplar link, the derived field, dashboards.

Grafana has no binary on this machine, so its files are parsed and held to the contract in
DESIGN.md: fixed uids, URLs naming compose services, links that survive every request ID and
open valid LogQL (@grafana/lezer-logql), and a derived field that matches a real log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from instrumentation import vocabulary
from tests.support.checkers import logql_errors
from tests.support.stack_files import (
    PROVISIONING,
    ROOT,
    SAMPLE_IDS,
    VALUE_PLACEHOLDER,
    bind_target,
    exemplar_destination,
    explore_queries,
    grafana_expand,
    load_yaml,
    provisioned_datasources,
    real_log_line,
    resolved_compose,
)

DASHBOARD_PROVIDERS = PROVISIONING / "dashboards" / "corrstack.yml"


def test_datasource_uids_are_the_fixed_ones() -> None:
    datasources = provisioned_datasources()
    assert set(datasources) == {"prometheus", "loki", "alertmanager"}
    assert set(vocabulary.DATASOURCE_UIDS) == set(datasources)
    assert {uid: ds["type"] for uid, ds in datasources.items()} == {
        "prometheus": "prometheus",
        "loki": "loki",
        "alertmanager": "alertmanager",
    }


def test_datasource_urls_name_compose_services_and_their_ports(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]
    for ds in provisioned_datasources().values():
        url = urlsplit(ds["url"])
        assert url.hostname in services, ds["url"]
        ports = {p["target"] for p in services[url.hostname].get("ports", [])}
        assert url.port in ports, ds["url"]


@pytest.mark.parametrize("request_id", SAMPLE_IDS)
def test_exemplar_link_opens_loki_explore_for_that_request(request_id: str) -> None:
    destination = exemplar_destination()
    assert destination["name"] == "request_id"  # the exemplar label holding the ID
    assert "datasourceUid" not in destination  # internal links only speak to trace datasources
    url = grafana_expand(destination["url"])
    assert url.count(VALUE_PLACEHOLDER) == 2
    [query] = explore_queries(url.replace(VALUE_PLACEHOLDER, request_id))
    assert query["datasource"] == {"type": "loki", "uid": "loki"}
    expr = query["expr"]
    assert f'|= "{request_id}"' in expr
    assert f'| json | request_id="{request_id}"' in expr
    assert "service=" in expr.split("}")[0]  # every service, not just the one scraped


@pytest.mark.binary("node")
def test_every_logql_string_in_provisioning_parses() -> None:
    expressions = []
    for request_id in SAMPLE_IDS:
        url = grafana_expand(exemplar_destination()["url"])
        expressions += [
            q["expr"] for q in explore_queries(url.replace(VALUE_PLACEHOLDER, request_id))
        ]
    assert len(expressions) == len(SAMPLE_IDS)
    assert logql_errors(expressions) == {}


@pytest.mark.binary("node")
def test_the_logql_check_catches_a_broken_link_query() -> None:
    url = grafana_expand(exemplar_destination()["url"]).replace(VALUE_PLACEHOLDER, SAMPLE_IDS[0])
    [query] = explore_queries(url)
    broken = query["expr"].replace("| json |", "| json ||")
    assert logql_errors([broken]) != {}


@pytest.mark.parametrize("request_id", SAMPLE_IDS)
def test_derived_field_turns_a_real_log_line_into_a_request_trace_link(
    log_capture: Any, request_id: str
) -> None:
    [field] = provisioned_datasources()["loki"]["jsonData"]["derivedFields"]
    line, record = real_log_line(log_capture, request_id)
    assert record["request_id"] == request_id
    # Grafana runs the regex in the browser; this one is also valid JavaScript.
    match = re.search(field["matcherRegex"], line)
    assert match is not None, line
    assert match.group(1) == request_id
    url = grafana_expand(field["url"]).replace(VALUE_PLACEHOLDER, match.group(1))
    parts = urlsplit(url)
    assert parts.path == f"/d/{vocabulary.REQUEST_TRACE_DASHBOARD}/request-trace"
    assert parse_qs(parts.query) == {"var-request_id": [request_id]}


def test_dashboard_provider_loads_the_mounted_generated_dashboards(tmp_path: Path) -> None:
    [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    grafana = resolved_compose(tmp_path)["services"]["grafana"]
    assert provider["type"] == "file"
    target = bind_target(grafana, tmp_path, ROOT / "dashboards" / "generated")
    assert provider["options"]["path"] == target
    assert bind_target(grafana, tmp_path, PROVISIONING) == "/etc/grafana/provisioning"
