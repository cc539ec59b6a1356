"""Dashboards as code: the committed JSON is current, every query parses with the real grammar,
uses a provisioned datasource and names a metric the app exposes, the click-through links are
there, and a real Prometheus answers every service-overview query."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from codegen.kubernetes import KUBERNETES_OUT
from dashboards.build import COMMAND, main, render_all
from instrumentation import vocabulary
from tests.support.checkers import logql_errors, promql_errors, substitute_grafana_variables
from tests.support.processes import wait_until
from tests.support.stack import prometheus, query, serve_app, wait_for_scrape

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "dashboards" / "generated"
UIDS = {"service-overview", "errors", "business", "system-health", "request-trace"}
DATASOURCE_PROVISIONING = ROOT / "config" / "grafana" / "provisioning" / "datasources"
# Series Prometheus writes itself, not the app: alert state and per-target scrape health.
FROM_PROMETHEUS = {"ALERTS", "up", "scrape_duration_seconds", "scrape_samples_scraped"}
ID_FIELDS = ("request_id", "trace_id", "user_id")
Dashboard = dict[str, Any]


@pytest.fixture(scope="module")
def dashboards() -> dict[str, Dashboard]:
    return {name.removesuffix(".json"): json.loads(text) for name, text in render_all().items()}


def panels(dashboard: Dashboard) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def target_exprs(dashboard: Dashboard, datasource_type: str) -> Iterator[str]:
    """The expression of every panel target of `datasource_type`."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == datasource_type:
                yield target["expr"]


def variable_selector(query: str) -> str:
    """The PromQL inside a Prometheus variable query (`label_values(<selector>, <label>)`)."""
    match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query) or re.fullmatch(
        r"query_result\((.+)\)", query
    )
    assert match, f"unknown variable query form: {query}"
    return match.group(1)


def promql(dashboard: Dashboard) -> list[str]:
    """Every PromQL expression: panel targets, annotations and query variables."""
    exprs = list(target_exprs(dashboard, "prometheus"))
    exprs += [
        a["expr"]
        for a in dashboard.get("annotations", {}).get("list", [])
        if a.get("datasource", {}).get("type") == "prometheus"
    ]
    exprs += [
        variable_selector(v["query"])
        for v in dashboard["templating"]["list"]
        if v["type"] == "query" and v["datasource"]["type"] == "prometheus"
    ]
    return exprs


def all_promql(dashboards: dict[str, Dashboard]) -> list[str]:
    return [substitute_grafana_variables(e) for d in dashboards.values() for e in promql(d)]


def all_logql(dashboards: dict[str, Dashboard]) -> list[str]:
    return [
        substitute_grafana_variables(expr)
        for d in dashboards.values()
        for expr in target_exprs(d, "loki")
    ]


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    return {
        s.name or next(m.value for m in s.matchers.matchers if m.name == "__name__")
        for s in selectors(expr)
    }


def datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


# --- Generated files ---------------------------------------------------------------------------


def test_committed_json_equals_a_fresh_build(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in GENERATED.glob("*.json")}
    # The ConfigMaps for Grafana's sidecars (deploy/kubernetes/generated/) too.
    for path in (tmp_path / "kubernetes").iterdir():
        fresh[f"kubernetes/{path.name}"] = path.read_bytes()
        committed[f"kubernetes/{path.name}"] = (KUBERNETES_OUT / path.name).read_bytes()
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"dashboards/generated is stale ({', '.join(stale)}): run `{COMMAND}`"


def test_one_file_per_dashboard_named_by_its_fixed_uid(dashboards: dict[str, Dashboard]) -> None:
    assert {uid: d["uid"] for uid, d in dashboards.items()} == {uid: uid for uid in UIDS}


def test_the_vocabulary_names_the_designed_uids() -> None:
    assert set(vocabulary.DASHBOARD_UIDS) == UIDS


def test_every_dashboard_is_tagged_generated(dashboards: dict[str, Dashboard]) -> None:
    assert {uid for uid, d in dashboards.items() if "generated" in d["tags"]} == UIDS


def test_panel_ids_are_unique(dashboards: dict[str, Dashboard]) -> None:
    for uid, dashboard in dashboards.items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)) and 0 not in ids, uid


def test_check_names_stale_files_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    (tmp_path / "errors.json").write_text("{}\n")
    (tmp_path / "old-dashboard.json").write_text("{}\n")
    capsys.readouterr()

    assert main(["--check", "--out", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "errors.json" in message and "old-dashboard.json" in message
    assert "service-overview.json" not in message
    assert f"{COMMAND} --out {tmp_path}" in message


def test_check_passes_on_a_fresh_build(tmp_path: Path) -> None:
    main(["--out", str(tmp_path)])
    assert main(["--check", "--out", str(tmp_path)]) == 0


# --- Queries -----------------------------------------------------------------------------------


@pytest.mark.binary("promtool")
def test_every_promql_expression_passes_promtool(dashboards: dict[str, Dashboard]) -> None:
    exprs = all_promql(dashboards)
    assert len(exprs) > 40
    assert promql_errors(exprs) == ""


@pytest.mark.binary("node")
def test_every_logql_expression_parses(dashboards: dict[str, Dashboard]) -> None:
    queries = all_logql(dashboards)
    assert len(queries) > 8
    assert logql_errors(queries) == {}


def provisioned_datasources() -> list[dict[str, Any]]:
    """Every datasource Grafana's provisioning creates."""
    return [
        source
        for path in sorted(DATASOURCE_PROVISIONING.glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]


def test_every_datasource_reference_is_provisioned(dashboards: dict[str, Dashboard]) -> None:
    provisioned = {(source["uid"], source["type"]) for source in provisioned_datasources()}
    assert {("prometheus", "prometheus"), ("loki", "loki")} <= provisioned
    refs = [ref for d in dashboards.values() for ref in datasource_refs(d)]
    assert refs
    assert [r for r in refs if (r.get("uid"), r.get("type")) not in provisioned] == []


def test_every_target_names_its_datasource(dashboards: dict[str, Dashboard]) -> None:
    missing = [
        (uid, panel["title"])
        for uid, d in dashboards.items()
        for panel in panels(d)
        for target in panel.get("targets", [])
        if "datasource" not in target or "datasource" not in panel
    ]
    assert missing == []


@pytest.fixture
def exposed_metric_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the demo `api` service exposes on /metrics."""
    from demo.api import create_app

    # The conftest's fresh registry, reset after the test; instrument_app() adds the process,
    # platform and GC collectors to it.
    app = create_app(registry=registry)

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            (await client.get("/health")).raise_for_status()
            return (await client.get("/metrics")).text

    exposition = asyncio.run(scrape())
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
            names |= {name + s for s in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_queried_metric_exists_on_the_demo_apps_metrics(
    dashboards: dict[str, Dashboard], exposed_metric_names: set[str]
) -> None:
    queried = set().union(*(metric_names(e) for e in all_promql(dashboards)))
    assert {"http_request_duration_seconds_bucket", "app_errors_total"} <= queried
    assert queried - exposed_metric_names - FROM_PROMETHEUS == set()


def test_ids_are_never_labels_in_a_query(dashboards: dict[str, Dashboard]) -> None:
    """request_id, trace_id and user_id are never Prometheus labels nor Loki stream labels."""
    prometheus_labels = {
        m.name for e in all_promql(dashboards) for s in selectors(e) for m in s.matchers.matchers
    }
    assert "route" in prometheus_labels
    assert prometheus_labels.isdisjoint(ID_FIELDS)
    stream_selectors = [s for q in all_logql(dashboards) for s in re.findall(r"\{[^{}]*\}", q)]
    assert stream_selectors
    assert [s for s in stream_selectors if any(f in s for f in ID_FIELDS)] == []


def test_loki_stream_selectors_use_only_loki_labels(dashboards: dict[str, Dashboard]) -> None:
    streams = [re.match(r"\{[^{}]*\}", q) for q in all_logql(dashboards)]
    labels = {
        name
        for stream in streams
        if stream
        for name in re.findall(r'(\w+)\s*!?[=~]+\s*"', stream.group(0))
    }
    assert "level" in labels
    assert labels <= set(vocabulary.LOKI_LABELS)


# --- What each dashboard shows -----------------------------------------------------------------


def _panel(dashboard: Dashboard, title_start: str) -> dict[str, Any]:
    [panel] = [p for p in panels(dashboard) if p.get("title", "").startswith(title_start)]
    return panel


def test_service_overview_latency_quantiles_carry_exemplars(
    dashboards: dict[str, Dashboard],
) -> None:
    latency = _panel(dashboards["service-overview"], "Latency p50 / p95 / p99")
    exprs = {t["expr"]: t["exemplar"] for t in latency["targets"]}
    assert [e.split(",")[0] for e in exprs] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]
    assert all("http_request_duration_seconds_bucket" in e and "route" in e for e in exprs)
    assert list(exprs.values()).count(True) == 1


@pytest.mark.parametrize(
    ("uid", "variables"),
    [
        ("service-overview", {"environment", "service", "route"}),
        ("errors", {"environment", "service", "route"}),
        ("request-trace", {"request_id", "user_id", "environment", "service", "route"}),
    ],
)
def test_dashboard_variables(
    dashboards: dict[str, Dashboard], uid: str, variables: set[str]
) -> None:
    assert {v["name"] for v in dashboards[uid]["templating"]["list"]} == variables


def test_request_trace_ids_are_textboxes(dashboards: dict[str, Dashboard]) -> None:
    kinds = {v["name"]: v["type"] for v in dashboards["request-trace"]["templating"]["list"]}
    assert (kinds["request_id"], kinds["user_id"]) == ("textbox", "textbox")


@pytest.mark.parametrize("field", ["request_id", "user_id"])
def test_request_trace_shows_every_line_of_the_id_across_services_in_time_order(
    dashboards: dict[str, Dashboard], field: str
) -> None:
    [panel] = [
        p
        for p in panels(dashboards["request-trace"])
        if p["type"] == "logs" and f"${field}" in p["title"]
    ]
    [target] = panel["targets"]
    assert target["expr"].startswith(f'{{service=~".+"}} |= "${field}" | json | {field}="${field}"')
    assert panel["options"]["sortOrder"] == "Ascending"


def test_errors_dashboard_shows_app_errors_alerts_and_error_lines_with_request_id(
    dashboards: dict[str, Dashboard],
) -> None:
    errors = dashboards["errors"]
    prom = " ".join(target_exprs(errors, "prometheus"))
    assert "app_errors_total" in prom and "by (error_type, operation)" in prom
    assert 'ALERTS{alertstate="firing"}' in prom
    recent = _panel(errors, "Recent errors and their requests")
    assert 'level=~"ERROR|CRITICAL"' in recent["targets"][0]["expr"]
    links = _field_links(recent, "request_id")
    assert [link["url"].split("?")[0] for link in links] == ["/d/request-trace"]
    assert "var-request_id=${__value.raw" in links[0]["url"]


def test_errors_links_to_the_provisioned_alertmanager_by_its_name(
    dashboards: dict[str, Dashboard],
) -> None:
    [alertmanager] = [s for s in provisioned_datasources() if s["type"] == "alertmanager"]
    urls = [link["url"] for link in dashboards["errors"]["links"]]
    assert f"/alerting/groups?alertmanager={alertmanager['name']}" in urls


def test_business_counts_active_users_from_log_lines(dashboards: dict[str, Dashboard]) -> None:
    logql = list(target_exprs(dashboards["business"], "loki"))
    assert logql and all("sum by (user_id)" in e and 'user_id!=""' in e for e in logql)


def test_system_health_shows_gc_scrapes_and_latency_next_to_memory(
    dashboards: dict[str, Dashboard],
) -> None:
    health = dashboards["system-health"]
    queried = set().union(*(metric_names(substitute_grafana_variables(e)) for e in promql(health)))
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_collections_total",
        "up",
        "scrape_duration_seconds",
    } <= queried
    latency, memory = _panel(health, "p95 latency"), _panel(health, "Resident memory")
    assert latency["gridPos"]["y"] == memory["gridPos"]["y"]


# --- Click-through -----------------------------------------------------------------------------


def _field_links(panel: dict[str, Any], field: str) -> list[dict[str, Any]]:
    return [
        link
        for override in panel["fieldConfig"]["overrides"]
        if override["matcher"]["options"] == field
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]


def test_every_dashboard_links_to_the_other_four_keeping_time_and_variables(
    dashboards: dict[str, Dashboard],
) -> None:
    for uid, dashboard in dashboards.items():
        links = {
            link["url"]: (link["keepTime"], link["includeVars"]) for link in dashboard["links"]
        }
        assert {url: links.get(url) for url in (f"/d/{other}" for other in UIDS - {uid})} == {
            f"/d/{other}": (True, True) for other in UIDS - {uid}
        }, uid


@pytest.mark.parametrize(
    ("uid", "title"),
    [
        ("service-overview", "Latency p50 / p95 / p99"),
        ("service-overview", "Error ratio by route"),
        ("errors", "Error ratio by route"),
        ("errors", "5xx responses"),
    ],
)
def test_latency_and_error_panels_link_to_errors_and_request_trace(
    dashboards: dict[str, Dashboard], uid: str, title: str
) -> None:
    links = _panel(dashboards[uid], title)["fieldConfig"]["defaults"]["links"]
    assert sorted(link["url"].split("?")[0] for link in links) == ["/d/errors", "/d/request-trace"]
    for link in links:
        query = link["url"].split("?", 1)[1]
        assert query.startswith("${__url_time_range}&")
        assert "var-route=${__field.labels.route" in query


def test_route_table_links_each_route_to_its_errors_and_requests(
    dashboards: dict[str, Dashboard],
) -> None:
    table = _panel(dashboards["service-overview"], "Routes over the time range")
    urls = [link["url"] for link in _field_links(table, "route")]
    assert sorted(u.split("?")[0] for u in urls) == ["/d/errors", "/d/request-trace"]
    assert all("${__url_time_range}" in u and "var-route=${__data.fields.route" in u for u in urls)


# --- Live: a real Prometheus scraping the app under uvicorn ------------------------------------

TRAFFIC_ROUNDS = 2
REQUESTS_PER_ROUND = 10


def _send_traffic(client: httpx.Client) -> None:
    for i in range(REQUESTS_PER_ROUND):
        assert client.get(f"/api/user/u{i % 3}/routine").status_code == 200
        assert client.post(f"/api/user/u{i % 3}/analysis").status_code == 200
        assert client.get(f"/api/user/u{i % 3}/fail").status_code == 500
        # uvicorn drops the connection after an unhandled exception: don't reuse it.
        assert client.get("/api/boom", headers={"Connection": "close"}).status_code == 500


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


@pytest.mark.integration
@pytest.mark.binary("prometheus")
def test_every_service_overview_query_returns_data_from_a_real_prometheus(
    tmp_path: Path, dashboards: dict[str, Dashboard]
) -> None:
    overview = dashboards["service-overview"]
    values = {v["name"]: v["allValue"] for v in overview["templating"]["list"]}
    values["service"] = "api"
    exprs = [substitute_grafana_variables(e, values) for e in target_exprs(overview, "prometheus")]
    [exemplar_expr] = [
        substitute_grafana_variables(t["expr"], values)
        for p in panels(overview)
        for t in p.get("targets", [])
        if t.get("exemplar")
    ]
    routine = 'http_requests_total{service="api", route="/api/user/{user_id}/routine"}'

    with (
        serve_app(
            tmp_path, "tests.apps.dashboards_app:app", service="api", env={"PYTHONPATH": str(ROOT)}
        ) as app,
        prometheus(tmp_path, {"api": [app.url.removeprefix("http://")]}) as prom,
        httpx.Client(base_url=app.url, timeout=10) as client,
    ):
        wait_for_scrape(prom, "api")
        # Two rounds, each seen by a scrape, so every rate() has two different samples.
        for round_number in range(1, TRAFFIC_ROUNDS + 1):
            _send_traffic(client)
            scraped = f"sum({routine}) >= {REQUESTS_PER_ROUND * round_number}"
            wait_until(
                lambda scraped=scraped: bool(query(prom, scraped)),  # type: ignore[misc]
                30,
                interval=0.5,
                what=f"a scrape after traffic round {round_number}",
            )

        empty = [e for e in exprs if not _finite(query(prom, e))]
        now = time.time()
        exemplars = httpx.get(
            f"{prom}/api/v1/query_exemplars",
            params={"query": exemplar_expr, "start": now - 600, "end": now},
            timeout=10,
        ).json()["data"]

    assert len(exprs) >= 9
    assert empty == [], "service-overview queries without data:\n" + "\n".join(empty)
    labels = [e["labels"] for series in exemplars for e in series["exemplars"]]
    assert labels and all(set(label) == {"request_id", "trace_id"} for label in labels)
