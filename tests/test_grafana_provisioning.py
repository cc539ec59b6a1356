"""Grafana provisioning: datasources, the exemplar link, the derived field, dashboards.

Grafana has no binary on this machine, so its files are parsed and held to the contract in
DESIGN.md: fixed uids, URLs naming compose services, links that survive every request ID and
open valid LogQL (@grafana/lezer-logql), and a derived field that matches a real log line.
The datasources file is generated (`dashboards.datasources`): off, it is the file checked
against a real Loki; with a trace backend, exemplars, lines and spans link by trace_id.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from dashboards import build, config
from dashboards.commented_yaml import plain, render
from dashboards.config import TraceBackend
from dashboards.datasources import datasources_document, datasources_file
from instrumentation import vocabulary
from tests.apps.otel_app import build as otel_app
from tests.support.checkers import logql_errors
from tests.support.stack_files import (
    DATASOURCES,
    PROVISIONING,
    ROOT,
    SAMPLE_IDS,
    SAMPLE_TRACE_ID,
    VALUE_PLACEHOLDER,
    bind_target,
    derived_fields,
    exemplar_destination,
    exemplar_destinations,
    explore_queries,
    grafana_expand,
    load_yaml,
    provisioned_datasources,
    real_log_line,
    resolved_compose,
    string_values,
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


# --- The generated datasources file and its trace links ----------------------------------------

# The file as it was checked against a real Loki 3.5 (docs: FACTS.md), before it was generated.
VERIFIED_OFF_SHA256 = "7f7284d1edcdbcf0d5333263f2edd474ebb2cceb53686a47274bb9a1603b2a0b"
# A Tempo corrstack provisions, and a trace datasource (Jaeger, say) the user already has.
BACKENDS = {
    "tempo-provisioned": TraceBackend(uid="tempo", url="http://tempo:3200"),
    "own-datasource": TraceBackend(uid="my-jaeger"),
}
SPAN_TRACE_ID = "${__span.traceId}"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture(params=BACKENDS.values(), ids=BACKENDS.keys())
def backend(request: pytest.FixtureRequest) -> TraceBackend:
    traces: TraceBackend = request.param
    return traces


def test_trace_links_are_off_by_default_and_the_committed_file_is_the_off_build() -> None:
    assert config.TRACE_BACKEND is None
    committed = DATASOURCES.read_bytes()
    assert datasources_file(None).encode() == committed
    assert build.render_datasources() == {DATASOURCES.name: datasources_file(None)}


def test_off_is_byte_for_byte_the_file_checked_against_a_real_loki() -> None:
    digest = hashlib.sha256(datasources_file(None).encode()).hexdigest()
    assert digest == VERIFIED_OFF_SHA256, "the off variant changed: re-check it on a real Loki"


def _as_grafana_reads(node: Any) -> Any:
    """A parsed provisioning document after Grafana's env expansion (`$$` -> `$`)."""
    if isinstance(node, dict):
        return {key: _as_grafana_reads(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_as_grafana_reads(item) for item in node]
    return grafana_expand(node) if isinstance(node, str) else node


def test_grafana_reads_exactly_the_document_the_file_was_written_from(
    backend: TraceBackend,
) -> None:
    for traces in (None, backend):
        parsed = yaml.safe_load(datasources_file(traces))
        assert _as_grafana_reads(parsed) == plain(datasources_document(traces))


@pytest.mark.parametrize(
    "value",
    [
        "true",
        "null",
        "~",
        "1.5",
        "0x1f",
        "-1m",
        "a: b",
        "a #b",
        "#a",
        "",
        "a ",
        " a",
        "@a",
        "`a`",
        "%a",
        "{a}",
        "[a]",
        "*a",
        "&a",
        "!a",
        "|a",
        ">a",
        "?a",
        'it\'s "q"',
        "a\\b",
        "http://tempo:3200",
        "Logs of this request (all services)",
        "$${__value.raw}",
    ],
)
def test_every_string_reads_back_as_itself(value: str) -> None:
    assert yaml.safe_load(render({"key": [{"name": value}]})) == {"key": [{"name": value}]}


def test_a_string_yaml_cannot_hold_on_one_line_is_refused() -> None:
    with pytest.raises(ValueError, match="one printable line"):
        render({"key": "two\nlines"})


def test_on_keeps_every_link_of_off_byte_for_byte(backend: TraceBackend) -> None:
    off, on = datasources_file(None), datasources_file(backend)
    assert exemplar_destinations(on)["request_id"] == exemplar_destination()
    assert derived_fields(on)["request_id"] == derived_fields(off)["request_id"]
    for line in off.splitlines():
        if not line.lstrip().startswith("#"):
            assert line in on.splitlines(), line


def test_on_the_exemplar_also_opens_its_trace_by_trace_id(backend: TraceBackend) -> None:
    destinations = exemplar_destinations(datasources_file(backend))
    assert list(destinations) == ["request_id", "trace_id"]
    trace = destinations["trace_id"]
    # Grafana's internal exemplar link: the trace datasource queried by the label's value.
    assert trace["datasourceUid"] == backend.uid
    assert "url" not in trace
    assert trace["urlDisplayLabel"]


def test_on_a_log_line_links_to_its_trace(backend: TraceBackend) -> None:
    field = derived_fields(datasources_file(backend))["trace_id"]
    assert field["matcherType"] == "regex"
    assert field["datasourceUid"] == backend.uid
    # For an internal link `url` is the query sent to the trace datasource: the trace id.
    assert grafana_expand(field["url"]) == VALUE_PLACEHOLDER


def test_every_value_escapes_dollar_for_grafanas_env_expansion(backend: TraceBackend) -> None:
    for traces in (None, backend):
        text = datasources_file(traces)
        for value in string_values(yaml.safe_load(text)):
            grafana_expand(value)  # asserts that no `$` is left for env expansion to eat
    assert 'url: "$${__value.raw}"' in datasources_file(backend)


def test_off_has_no_trace_link_and_no_trace_datasource() -> None:
    text = datasources_file(None)
    assert set(exemplar_destinations(text)) == {"request_id"}
    assert set(derived_fields(text)) == {"request_id"}
    assert set(provisioned_datasources(text)) == set(vocabulary.DATASOURCE_UIDS)


def test_a_url_provisions_tempo_whose_spans_link_to_their_lines() -> None:
    traces = BACKENDS["tempo-provisioned"]
    datasources = provisioned_datasources(datasources_file(traces))
    assert set(datasources) == {*vocabulary.DATASOURCE_UIDS, traces.uid}
    tempo = datasources[traces.uid]
    assert (tempo["type"], tempo["url"], tempo["access"]) == ("tempo", traces.url, "proxy")
    assert [ds["name"] for ds in datasources.values()].count(tempo["name"]) == 1
    logs = tempo["jsonData"]["tracesToLogsV2"]
    assert logs["datasourceUid"] == vocabulary.LOKI_DATASOURCE
    assert logs["customQuery"] is True
    assert (logs["spanStartTimeShift"], logs["spanEndTimeShift"]) == ("-1m", "1m")
    query = grafana_expand(logs["query"]).replace(SPAN_TRACE_ID, SAMPLE_TRACE_ID)
    assert query.startswith('{service=~".+"}')  # every service's lines of the trace
    assert f'|= "{SAMPLE_TRACE_ID}" | json | trace_id="{SAMPLE_TRACE_ID}"' in query


def test_without_a_url_no_datasource_is_added() -> None:
    traces = BACKENDS["own-datasource"]
    assert set(provisioned_datasources(datasources_file(traces))) == set(vocabulary.DATASOURCE_UIDS)


@pytest.mark.binary("node")
def test_the_trace_links_logql_parses_and_the_check_catches_a_broken_one() -> None:
    tempo = provisioned_datasources(datasources_file(BACKENDS["tempo-provisioned"]))["tempo"]
    query = grafana_expand(tempo["jsonData"]["tracesToLogsV2"]["query"])
    expressions = [query.replace(SPAN_TRACE_ID, SAMPLE_TRACE_ID)]
    url = grafana_expand(
        exemplar_destinations(datasources_file(BACKENDS["own-datasource"]))["request_id"]["url"]
    )
    expressions += [q["expr"] for q in explore_queries(url.replace(VALUE_PLACEHOLDER, "r-1"))]
    assert logql_errors(expressions) == {}
    assert logql_errors([expressions[0].replace("| json |", "| json ||")]) != {}


def test_the_trace_id_regex_matches_a_real_line_and_never_an_empty_trace_id(
    log_capture: Any,
) -> None:
    regex = derived_fields(datasources_file(BACKENDS["own-datasource"]))["trace_id"]["matcherRegex"]
    line, record = real_log_line(log_capture, SAMPLE_IDS[1])
    match = re.search(regex, line)
    assert match is not None and match.group(1) == record["trace_id"] == SAMPLE_TRACE_ID
    # A line written outside any request has no trace: `"trace_id":""`.
    logging.getLogger("corrstack.test").info("Started")
    line = log_capture.text.splitlines()[-1]
    assert '"trace_id":""' in line
    assert re.search(regex, line) is None
    # Nor a trace id that is only part of another field's name or inside a string.
    assert re.search(regex, '{"parent_trace_id":"' + SAMPLE_TRACE_ID + '"}') is None
    assert re.search(regex, '{"message":"{\\"trace_id\\":\\"' + SAMPLE_TRACE_ID + '\\"}"}') is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.mark.anyio
async def test_next_to_opentelemetry_line_exemplar_and_span_share_the_linked_trace_id(
    spans: tuple[TracerProvider, InMemorySpanExporter], log_capture: Any
) -> None:
    provider, exporter = spans
    text = datasources_file(BACKENDS["tempo-provisioned"])
    transport = httpx.ASGITransport(app=otel_app(provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/headers", headers={"X-Correlation-ID": "otel-link-1"})
        metrics = (await client.get("/metrics", headers={"Accept": OPENMETRICS})).text
    assert response.status_code == 200
    [server] = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == "/headers"
    ]
    assert server.context is not None
    span_trace_id = format(server.context.trace_id, "032x")

    [line] = [t for t in log_capture.text.splitlines() if '"request_id":"otel-link-1"' in t]
    fields = derived_fields(text)
    assert re.search(fields["request_id"]["matcherRegex"], line).group(1) == "otel-link-1"
    match = re.search(fields["trace_id"]["matcherRegex"], line)
    assert match is not None and match.group(1) == span_trace_id

    [exemplar] = [
        sample.exemplar.labels
        for family in text_string_to_metric_families(metrics)
        if family.name == "http_request_duration_seconds"
        for sample in family.samples
        if sample.exemplar and sample.exemplar.labels.get("request_id") == "otel-link-1"
    ]
    # Each exemplar link reads the label it is named after.
    assert {name: exemplar[name] for name in exemplar_destinations(text)} == {
        "request_id": "otel-link-1",
        "trace_id": span_trace_id,
    }


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"uid": "loki"}, "one of the stack's datasources"),
        ({"uid": "tempo uid"}, "a Grafana uid is"),
        ({"uid": "x" * 41}, "a Grafana uid is"),
        ({"uid": "tempo", "url": "tempo:3200"}, "TRACE_BACKEND.url must be an http"),
        ({"uid": "tempo", "url": "http://user:pw@tempo:3200"}, "without user:password"),
        ({"uid": "tempo", "url": "http://tempo:3200", "name": "Loki"}, "no other datasource"),
    ],
)
def test_a_trace_backend_grafana_could_not_use_fails_the_build(
    settings: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        TraceBackend(**settings)


def test_out_takes_the_datasources_file_too_and_leaves_the_users_own_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / DATASOURCES.name).read_bytes() == DATASOURCES.read_bytes()
    (tmp_path / "tempo.yml").write_text("apiVersion: 1\n")  # a datasource of the user's
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / DATASOURCES.name).write_text("apiVersion: 1\n")
    capsys.readouterr()
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{DATASOURCES.name}: differs" in err and "tempo.yml" not in err
    assert f"Run: {build.COMMAND} --out {tmp_path}" in err
