"""Generated alert rules: fresh, valid for promtool/amtool/Loki, tested, documented."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from alert_rules import DEFAULT, ConfigError
from alert_rules.build import GENERATOR, generated_files, main
from codegen.kubernetes import KUBERNETES_OUT
from instrumentation import vocabulary
from instrumentation.metrics import Metrics
from tests.support.checkers import logql_errors

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = GENERATOR.default_out
PROMETHEUS_FILES = sorted((DEFAULT_OUT / "prometheus").glob("*.yml"))
UNIT_TEST_FILES = sorted((DEFAULT_OUT / "tests").glob("*.yml"))
LOKI_FILE = DEFAULT_OUT / "loki" / "rules.yml"
ALERTMANAGER = ROOT / "config" / "alertmanager" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DESIGN_ALERTS = {
    "HighErrorRate",
    "SlowResponses",
    "CriticalErrorPattern",
    "CostAnomaly",
    "TargetDown",
    "HighMemoryUsage",
    "ErrorBudgetBurn",
}
LATENCY_BUCKET = re.compile(r'http_request_duration_seconds_bucket\{[^}]*\ble="([^"]+)"')


def _rules(paths: list[Path]) -> list[dict[str, Any]]:
    return [
        rule
        for path in paths
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _alerts(paths: list[Path]) -> list[dict[str, Any]]:
    return [rule for rule in _rules(paths) if "alert" in rule]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


# --- the build -------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.yml")}


def test_committed_files_equal_a_fresh_build(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    fresh, committed = _tree(tmp_path), _tree(DEFAULT_OUT)
    # The PrometheusRule and the Loki rules ConfigMap (deploy/kubernetes/generated/) too.
    for path in (tmp_path / "kubernetes").iterdir():
        fresh[f"kubernetes/{path.name}"] = path.read_bytes()
        committed[f"kubernetes/{path.name}"] = (KUBERNETES_OUT / path.name).read_bytes()
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, (
        f"alert_rules/generated is stale ({', '.join(stale)}): run `{GENERATOR.command}`"
    )


def test_check_names_stale_and_leftover_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    alerts = tmp_path / "prometheus" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 5m", "for: 1m", 1))
    (tmp_path / "loki" / "old.yml").write_text("groups: []\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "prometheus/alerts.yml" in err
    assert "loki/old.yml" in err
    assert f"python -m alert_rules.build --out {tmp_path}" in err


def test_check_of_a_drill_build_names_its_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), "--check", "--profile", "drill"]) == 1
    assert "python -m alert_rules.build --profile drill --out" in capsys.readouterr().err


def test_build_is_deterministic() -> None:
    assert generated_files(DEFAULT) == generated_files(DEFAULT)


def test_drill_profile_shrinks_the_error_rate_alert(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--profile", "drill"]) == 0
    (rule,) = [
        r for r in _alerts([tmp_path / "prometheus/alerts.yml"]) if r["alert"] == "HighErrorRate"
    ]
    assert rule["for"] == "5s"
    assert "[10s]" in rule["expr"]
    assert not (tmp_path / "tests").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"error_rate_window": ""}, "error_rate_window is required"),
        ({"cost_daily_budget_usd": None}, "cost_daily_budget_usd is required"),
        ({"burn_windows": ()}, "burn_windows is required"),
        ({"latency_for": "10 minutes"}, "not a Prometheus duration"),
        ({"latency_slo_le": "0.3"}, "latency_slo_le='0.3' is not a bucket"),
        # prometheus_client writes le="1.0": a rule matching le="1" would match no series.
        ({"latency_slo_le": "1"}, "latency_slo_le='1' is not a bucket"),
        ({"latency_threshold_seconds": 0.75}, "latency_threshold_seconds=0.75 is not a bucket"),
        ({"availability_slo": 99.9}, "availability_slo must be between 0 and 1"),
        ({"error_threshold": 0.1}, "unknown settings ['error_threshold']"),
    ],
)
def test_missing_or_bad_config_fails_loudly(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        DEFAULT.with_overrides(**override)
    assert message in str(error.value)


# --- the stack's vocabulary -------------------------------------------------------------------


def _exposed_latency_buckets() -> set[str]:
    """The `le` labels the library's request-duration histogram really writes."""
    registry = CollectorRegistry()
    Metrics(registry).http_request_duration_seconds.labels("GET", "/").observe(0.1)
    return {
        sample.labels["le"]
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "http_request_duration_seconds_bucket"
    }


def test_the_latency_slo_threshold_is_a_bucket_the_library_writes() -> None:
    assert float(DEFAULT.latency_slo_le) in vocabulary.LATENCY_BUCKETS
    assert DEFAULT.latency_slo_le in _exposed_latency_buckets()
    assert DEFAULT.latency_threshold_seconds in vocabulary.LATENCY_BUCKETS


def test_every_latency_le_in_rules_and_promtool_tests_is_a_bucket() -> None:
    exposed = _exposed_latency_buckets()
    in_rules = [le for r in _rules(PROMETHEUS_FILES) for le in LATENCY_BUCKET.findall(r["expr"])]
    in_tests = [
        le
        for path in UNIT_TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for series in test["input_series"]
        for le in LATENCY_BUCKET.findall(series["series"])
    ]
    assert in_rules and in_tests
    # Rules match `le` by string: it must be the library's spelling. Test inputs only need the
    # bound (histogram_quantile parses it).
    assert set(in_rules) - exposed == set()
    assert {
        le for le in in_tests if le != "+Inf" and float(le) not in vocabulary.LATENCY_BUCKETS
    } == set()


def test_the_vocabulary_names_the_designed_alerts() -> None:
    assert set(vocabulary.PROMETHEUS_ALERTS) == DESIGN_ALERTS


def test_every_http_selector_leaves_out_the_quiet_paths() -> None:
    matchers = [
        selector
        for rule in _rules(PROMETHEUS_FILES)
        for selector in re.findall(r"\bhttp_request\w*\{([^}]*)\}", rule["expr"])
    ]
    assert matchers
    quiet = f'route!~"{vocabulary.quiet_paths_regex()}"'
    assert [m for m in matchers if quiet not in m] == []


# --- what every alert carries ----------------------------------------------------------------


def test_alert_names_are_the_designed_ones() -> None:
    assert {rule["alert"] for rule in _alerts(PROMETHEUS_FILES)} == DESIGN_ALERTS


@pytest.mark.parametrize(
    "rule",
    _alerts([*PROMETHEUS_FILES, LOKI_FILE]),
    ids=lambda r: f"{r['alert']}-{r['labels'].get('long_window', '')}",
)
def test_every_alert_has_severity_service_for_and_annotations(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "page", "ticket"}
    assert re.search(r"by \((service|.*, service)", rule["expr"]) or "on (service)" in rule["expr"]
    assert rule["for"]
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert rule["annotations"]["runbook_url"] == vocabulary.runbook_url(rule["alert"])


def test_promtool_tests_expect_the_runbook_url_of_the_rules() -> None:
    urls = {
        check["alertname"]: alert["exp_annotations"]["runbook_url"]
        for path in UNIT_TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for check in test["alert_rule_test"]
        for alert in check["exp_alerts"]
    }
    assert urls == {name: vocabulary.runbook_url(name) for name in DESIGN_ALERTS}


def test_every_runbook_url_has_a_section() -> None:
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    anchors = {
        r["annotations"]["runbook_url"].rsplit("#", 1)[1]
        for r in _alerts([*PROMETHEUS_FILES, LOKI_FILE])
    }
    assert anchors <= headings, f"missing runbook sections: {anchors - headings}"


def test_counters_are_read_through_rate_or_increase() -> None:
    for rule in _rules(PROMETHEUS_FILES):
        for counter in re.findall(r"\b(\w+_total|\w+_bucket|\w+_count)\{", rule["expr"]):
            assert re.search(rf"(rate|increase)\({counter}\{{", rule["expr"]), (
                f"{rule.get('alert') or rule.get('record')} reads {counter} without rate/increase"
            )


def test_burn_rate_alerts_follow_the_workbook() -> None:
    burns = [r for r in _alerts(PROMETHEUS_FILES) if r["alert"] == "ErrorBudgetBurn"]
    got = {
        (r["labels"]["slo"], r["labels"]["long_window"], r["labels"]["short_window"]): (
            r["labels"]["severity"],
            re.search(r"> \(([\d.]+) \*", r["expr"]).group(1),  # type: ignore[union-attr]
        )
        for r in burns
    }
    expected = {
        ("1h", "5m"): ("page", "14.4"),
        ("6h", "30m"): ("page", "6"),
        ("1d", "2h"): ("ticket", "3"),
        ("3d", "6h"): ("ticket", "1"),
    }
    assert got == {
        (slo, *windows): value
        for slo in ("availability", "latency")
        for windows, value in expected.items()
    }


# --- real tools ------------------------------------------------------------------------------


@pytest.mark.binary("promtool")
def test_promtool_check_rules_passes() -> None:
    result = _run("promtool", "check", "rules", *map(str, PROMETHEUS_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.binary("promtool")
def test_generated_promtool_tests_cover_every_alert() -> None:
    covered: dict[str, set[str]] = {}
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test["alert_rule_test"]:
                kind = "firing" if check["exp_alerts"] else "silent"
                covered.setdefault(check["alertname"], set()).add(kind)
            for check in test["promql_expr_test"]:
                name = re.search(r'alertname="(\w+)"', check["expr"]).group(1)  # type: ignore[union-attr]
                if check["exp_samples"]:
                    covered.setdefault(name, set()).add("pending")
    assert covered == {name: {"firing", "silent", "pending"} for name in DESIGN_ALERTS}


@pytest.mark.binary("promtool")
def test_promtool_unit_tests_pass() -> None:
    result = _run("promtool", "test", "rules", *map(str, UNIT_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TEST_FILES)


def _copy_test(tmp_path: Path, name: str) -> tuple[dict[str, Any], Path]:
    """A generated test file moved to tmp_path, its rule files copied beside it."""
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "tests").mkdir()
    for path in PROMETHEUS_FILES:
        (tmp_path / "prometheus" / path.name).write_text(path.read_text())
    return yaml.safe_load((DEFAULT_OUT / "tests" / name).read_text()), tmp_path / "tests" / name


@pytest.mark.binary("promtool")
def test_promtool_tests_fail_on_a_wrong_expectation(tmp_path: Path) -> None:
    document, path = _copy_test(tmp_path, "high_error_rate.yml")
    firing = next(c for c in document["tests"][0]["alert_rule_test"] if c["exp_alerts"])
    firing["exp_alerts"][0]["exp_labels"]["severity"] = "warning"
    path.write_text(yaml.safe_dump(document))
    result = _run("promtool", "test", "rules", str(path))
    assert result.returncode == 1
    assert 'severity="critical"' in result.stdout + result.stderr


@pytest.mark.binary("promtool")
def test_promtool_tests_fail_when_a_rule_breaks(tmp_path: Path) -> None:
    document, path = _copy_test(tmp_path, "error_budget_burn.yml")
    fastest_page = f"availability at {14.4 * 1.4:g}× burn"
    document["tests"] = [t for t in document["tests"] if fastest_page in t["name"]]
    assert len(document["tests"]) == 1
    path.write_text(yaml.safe_dump(document))
    slo = tmp_path / "prometheus" / "slo.yml"
    # A page pair that waits for 20× instead of 14.4×: the 20.16× scenario must catch it.
    original = slo.read_text()
    slo.write_text(original.replace("(14.4 * (1 - 0.999))", "(20.2 * (1 - 0.999))"))
    assert slo.read_text() != original
    result = _run("promtool", "test", "rules", str(path))
    assert result.returncode == 1, result.stdout


@pytest.mark.binary("node")
def test_loki_rules_and_runbook_queries_parse() -> None:
    rules = _alerts([LOKI_FILE])
    assert rules and "by (service)" in rules[0]["expr"]
    blocks = re.findall(r"```logql\n(.*?)```", RUNBOOKS.read_text(), re.S)
    runbook_queries = [line for block in blocks for line in block.strip().splitlines()]
    assert len(runbook_queries) >= len(DESIGN_ALERTS)
    assert logql_errors([r["expr"] for r in rules] + runbook_queries) == {}


@pytest.mark.binary("node")
def test_logql_checker_rejects_a_broken_rule() -> None:
    (rule,) = _alerts([LOKI_FILE])
    broken = rule["expr"].replace("count_over_time(", "count_over_time", 1)
    assert logql_errors([broken])


@pytest.mark.binary("amtool")
def test_amtool_accepts_the_alertmanager_config() -> None:
    result = _run("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.binary("amtool")
@pytest.mark.parametrize(
    ("severity", "receiver"),
    [
        ("page", "oncall-pager"),
        ("critical", "oncall-pager"),
        ("ticket", "team-tickets"),
        ("warning", "team-tickets"),
    ],
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    result = _run(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"severity={severity}",
        "service=api",
        "alertname=HighErrorRate",
    )
    assert result.stdout.strip() == receiver, result.stdout + result.stderr


def test_alertmanager_groups_and_inhibits_per_service() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert config["route"]["group_by"] == ["alertname", "service"]
    inhibitions = {
        (rule["source_matchers"][0], rule["target_matchers"][0]): rule["equal"]
        for rule in config["inhibit_rules"]
    }
    assert inhibitions == {('severity="page"', 'severity="ticket"'): ["service"]}
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://webhook-receiver:9095/") for u in urls)
