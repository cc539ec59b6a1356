"""Grafana's datasources for the stack: `config/grafana/provisioning/datasources/corrstack.yml`.

`python -m dashboards.build` writes the file from here, with the dashboards, so the uids, the
LogQL of the links and the dashboards they open are the ones the dashboards use. Two clicks
are built in: a latency exemplar opens Loki Explore on its request's lines (by `request_id`),
and a `request_id` inside a line opens the request-trace dashboard.

A trace backend (`config.TRACE_BACKEND`, off by default) adds the trace links by `trace_id`:
the exemplar gets a second link and each line a `trace_id` link, both internal links to the
trace datasource; with a URL, that datasource is provisioned too, as Tempo, and its spans link
back to their trace's lines in Loki. Off, the file is byte for byte the one checked against a
real Loki.

>>> "exemplarTraceIdDestinations" in datasources_file(None)
True
"""

from __future__ import annotations

from typing import Any

from dashboards import config
from dashboards.commented_yaml import Commented, Node, render
from dashboards.common.links import explore_url
from dashboards.common.logql import lines_with_value
from instrumentation.vocabulary import REQUEST_TRACE_DASHBOARD

FILE_NAME = "corrstack.yml"
# What Grafana replaces in a data link when it is clicked.
_VALUE = "${__value.raw}"
_SPAN_TRACE_ID = "${__span.traceId}"

_HEADER = """\
Grafana datasources for the corrstack stack. The uids are fixed (DESIGN.md): dashboards and
links refer to them. Grafana expands $VAR in provisioning files, so a literal `$` is `$$`."""

_EXEMPLAR_COMMENT = """\
A latency exemplar carries request_id. Grafana's internal exemplar link speaks only to
trace datasources, so this is the `url` form: Loki Explore, every service, that one
request (`${__value.raw}` is the exemplar's request_id, a URL- and LogQL-safe string
by the correlation contract). The Explore state is the url-encoded `panes` JSON:
  {"req": {"datasource": "loki", "queries": [{"refId": "A", "datasource":
   {"type": "loki", "uid": "loki"}, "expr": "{service=~\\".+\\"} |= \\"<id>\\" | json |
   request_id=\\"<id>\\""}], "range": {"from": "${__from}", "to": "${__to}"}}}
The range is the panel's (data-link variables `${__from}`/`${__to}`, epoch ms): the
exemplar was drawn inside it, so that request's lines are too, however old."""

_EXEMPLAR_TRACE_COMMENT = """\
It also carries trace_id (the OpenTelemetry span's when one is current): `trace_id` is
Grafana's internal link to the trace datasource `{uid}`, which looks the trace up by it."""

_DERIVED_FIELDS_COMMENT = """\
A request_id inside a log line becomes a link to the request-trace dashboard, which
shows that request's lines from every service in time order."""

_DERIVED_TRACE_COMMENT = """\
A trace_id (32 lowercase hex; never an empty one) becomes an internal link to the trace
datasource `{uid}`: the query is the trace id itself."""

_TRACES_TO_LOGS_COMMENT = """\
A span links to every service's lines of its trace: trace_id is a JSON field of the
line, never a Loki label, so it is matched in the pipeline, as the exemplar link does."""


def datasources_file(
    traces: config.TraceBackend | None, endpoints: config.Endpoints = config.COMPOSE
) -> str:
    """The provisioning file's text; `traces=None` (the default config) leaves trace links out.
    `endpoints` are compose's by default, `config.CLUSTER` for the Kubernetes ConfigMap."""
    return render(_grafana_literals(datasources_document(traces, endpoints)), header=_HEADER)


def datasources_document(
    traces: config.TraceBackend | None, endpoints: config.Endpoints = config.COMPOSE
) -> dict[str, Node | Commented]:
    """The provisioning document, comments included, with `$` still unescaped."""
    datasources = [prometheus(traces, endpoints), loki(traces, endpoints), alertmanager(endpoints)]
    if traces is not None and traces.url is not None:
        datasources.append(tempo(traces))
    return {"apiVersion": 1, "deleteDatasources": [], "datasources": datasources}


def prometheus(
    traces: config.TraceBackend | None, endpoints: config.Endpoints
) -> dict[str, Node | Commented]:
    destinations: list[Node] = [
        {
            "name": "request_id",
            "urlDisplayLabel": "Logs of this request (all services)",
            "url": explore_url(config.LOKI, lines_with_value("request_id", _VALUE)),
        }
    ]
    comment = _EXEMPLAR_COMMENT
    if traces is not None:
        destinations.append(
            {
                "name": "trace_id",
                "urlDisplayLabel": "Trace of this request",
                "datasourceUid": traces.uid,
            }
        )
        comment += "\n" + _EXEMPLAR_TRACE_COMMENT.format(uid=traces.uid)
    return {
        **_common(config.PROMETHEUS, endpoints.prometheus),
        "isDefault": True,
        "editable": False,
        "jsonData": {
            "httpMethod": "POST",
            "timeInterval": Commented(
                endpoints.scrape_interval,
                inline="the scrape interval, so $__rate_interval is never below 4 scrapes",
            ),
            "prometheusType": "Prometheus",
            "exemplarTraceIdDestinations": Commented(destinations, above=comment),
        },
    }


def loki(
    traces: config.TraceBackend | None, endpoints: config.Endpoints
) -> dict[str, Node | Commented]:
    fields: list[Node] = [
        {
            "name": "request_id",
            "matcherType": "regex",
            "matcherRegex": config.REQUEST_ID_IN_LINE,
            "url": f"/d/{REQUEST_TRACE_DASHBOARD}/request-trace?var-request_id={_VALUE}",
            "urlDisplayLabel": "Request trace (all services)",
        }
    ]
    comment = _DERIVED_FIELDS_COMMENT
    if traces is not None:
        fields.append(
            {
                "name": "trace_id",
                "matcherType": "regex",
                "matcherRegex": config.TRACE_ID_IN_LINE,
                "datasourceUid": traces.uid,
                "url": _VALUE,
                "urlDisplayLabel": "Trace of this request",
            }
        )
        comment += "\n" + _DERIVED_TRACE_COMMENT.format(uid=traces.uid)
    return {
        **_common(config.LOKI, endpoints.loki),
        "editable": False,
        "jsonData": {
            "maxLines": config.MAX_LOG_LINES,
            "derivedFields": Commented(fields, above=comment),
        },
    }


def alertmanager(endpoints: config.Endpoints) -> dict[str, Node | Commented]:
    return {
        **_common(config.ALERTMANAGER, endpoints.alertmanager),
        "editable": False,
        "jsonData": {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
    }


def tempo(traces: config.TraceBackend) -> dict[str, Node | Commented]:
    """The Tempo datasource at `traces.url`, its spans linked to their trace's lines in Loki."""
    if traces.url is None:
        raise ValueError("a Tempo datasource needs TRACE_BACKEND.url")
    backend = config.Datasource(uid=traces.uid, type="tempo", name=traces.name)
    return {
        **_common(backend, traces.url),
        "editable": False,
        "jsonData": {
            "tracesToLogsV2": Commented(
                {
                    "datasourceUid": config.LOKI.uid,
                    "spanStartTimeShift": config.SPAN_LOGS_START_SHIFT,
                    "spanEndTimeShift": config.SPAN_LOGS_END_SHIFT,
                    # A custom query: Grafana's own is built from span attributes that must be
                    # Loki labels, and a trace id is never one here.
                    "customQuery": True,
                    "query": lines_with_value("trace_id", _SPAN_TRACE_ID),
                },
                above=_TRACES_TO_LOGS_COMMENT,
            ),
        },
    }


def _common(datasource: config.Datasource, url: str) -> dict[str, Node | Commented]:
    return {
        "name": datasource.name,
        "uid": datasource.uid,
        "type": datasource.type,
        "access": "proxy",
        "url": url,
    }


def _grafana_literals(node: Any) -> Any:
    """Every `$` of every value doubled: Grafana expands `$VAR` and `${VAR}` in provisioning
    values, and `$$` is its literal `$` (comments are not values, they stay as written)."""
    if isinstance(node, Commented):
        return Commented(_grafana_literals(node.value), node.above, node.inline)
    if isinstance(node, dict):
        return {key: _grafana_literals(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_grafana_literals(item) for item in node]
    if isinstance(node, str):
        return node.replace("$", "$$")
    return node
