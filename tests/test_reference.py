"""docs/reference.md against what the stack really emits: the demo api's /metrics and log lines,
the generated dashboards and rules, and the settings the library reads."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import LogCapture
from tests.support.demo import demo_apps
from tests.support.log_fields import DESIGN_FIELDS

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "reference.md").read_text()
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
# prometheus_client's own collectors, documented as a group.
_CLIENT_FAMILIES = ("process_", "python_")


def table_row(first_cell: str) -> str:
    """The line of a reference table whose first cell is `first_cell` (in backticks)."""
    rows = [line for line in REFERENCE.splitlines() if line.startswith(f"| `{first_cell}` |")]
    assert len(rows) == 1, f"docs/reference.md has no single row for {first_cell!r}"
    return rows[0]


@pytest.fixture(scope="module")
def demo_output() -> tuple[str, list[dict[str, object]]]:
    """The api's /metrics after a few requests of every kind, and every line they wrote."""
    import io

    from instrumentation import setup_logging

    stream = io.StringIO()
    setup_logging(service="api", environment="test", stream=stream)
    app = demo_apps()

    async def run() -> str:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            try:
                await client.get("/api/user/user-1/profile")
                await client.post("/api/user/user-1/analysis", json={})
                await client.post("/api/user/user-1/routine/generate", json={"goal": "mobility"})
                await client.get("/no/such/path")
                return (await client.get("/metrics")).text
            finally:
                await app.state.analysis_client.aclose()

    exposition = asyncio.run(run())
    return exposition, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_metric_family_and_label_is_documented(
    demo_output: tuple[str, list[dict[str, object]]], log_capture: LogCapture
) -> None:
    exposition, _ = demo_output
    families = {
        line.split()[2]
        for line in exposition.splitlines()
        if line.startswith("# TYPE ")
        and not line.split()[2].startswith(_CLIENT_FAMILIES)
        and not line.split()[2].endswith("_created")  # the text format's creation times
    }
    assert {"http_requests_total", "http_request_duration_seconds", "log_records_total"} <= families
    for family in families:
        table_row(family)
    for line in exposition.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None or sample.group(1).startswith(_CLIENT_FAMILIES):
            continue
        family = max((f for f in families if sample.group(1).startswith(f)), key=len, default="")
        if not family:  # a `_created` series
            continue
        row = table_row(family)
        for label in _LABEL.findall(sample.group(2) or ""):
            if label != "le":
                assert f"`{label}`" in row, f"label {label!r} of {family} is not documented"


def test_every_documented_metric_is_exposed_or_marked_as_not_yet(
    demo_output: tuple[str, list[dict[str, object]]],
) -> None:
    exposition, _ = demo_output
    documented = re.findall(r"^\| `([a-z_]+)` \| (?:counter|gauge|histogram) \|", REFERENCE, re.M)
    assert len(documented) >= 10
    for name in documented:
        if "not emitted yet" not in table_row(name):
            assert f"# TYPE {name} " in exposition, f"{name} is documented but not exposed"


def test_every_log_field_of_the_demo_is_documented(
    demo_output: tuple[str, list[dict[str, object]]],
) -> None:
    _, records = demo_output
    access = [r for r in records if r["logger"] == "corrstack.access"]
    assert access, "the demo wrote no access line"
    keys = set(DESIGN_FIELDS) | {"seq", "boot_id"} | {k for r in access for k in r}
    keys |= {k for r in records if "error_type" in r for k in ("error_type", "error_message")}
    keys |= {k for r in records if "event_type" in r for k in ("event_type",)}
    missing = sorted(k for k in keys if f"`{k}`" not in REFERENCE)
    assert missing == []


def test_dashboards_and_their_panels_are_documented() -> None:
    for path in sorted((ROOT / "dashboards" / "generated").glob("*.json")):
        dashboard = json.loads(path.read_text())
        row = table_row(dashboard["uid"])
        titles = [p["title"] for p in dashboard["panels"] if p.get("type") != "row"]
        missing = [title for title in titles if title not in row]
        assert missing == [], f"{dashboard['uid']}: {missing}"


def test_every_alert_is_documented_with_its_severity() -> None:
    from instrumentation.vocabulary import ERROR_PATTERN_ALERT

    alerts: dict[str, set[str]] = {ERROR_PATTERN_ALERT: {"warning", "critical"}}
    for path in (ROOT / "alert_rules" / "generated").rglob("*.yml"):
        if "tests" in path.parts:
            continue
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert len(alerts) >= 9
    for name, severities in alerts.items():
        row = table_row(name)
        assert f"`#{name.lower()}`" in row
        assert all(severity in row for severity in severities), (name, severities)


def test_every_setting_the_library_reads_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "instrumentation").glob("*.py"))
    read = set(re.findall(r'\benv\("([A-Z_]+)"\)', source))
    read |= set(re.findall(r'"(ERROR_ALERT_[A-Z_]+)"', source))
    assert {"SERVICE_NAME", "LOG_BUFFER_BYTES", "ERROR_ALERT_THRESHOLD"} <= read
    for variable in read:
        table_row(variable)
    documented = re.findall(r"^\| `([A-Z_]+)` \|", REFERENCE, re.M)
    assert sorted(set(documented) - read) == []
