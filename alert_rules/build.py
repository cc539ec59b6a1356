"""Generate every rule file the stack loads, and the promtool tests for them.

    python -m alert_rules.build                       # write alert_rules/generated/
    python -m alert_rules.build --check               # exit 1 if a committed file is stale
    python -m alert_rules.build --out DIR --profile drill   # short windows, for a drill

Output (paths relative to --out): prometheus/alerts.yml, prometheus/slo.yml, loki/rules.yml
and, for the default profile, tests/<alert>.yml for `promtool test rules`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alert_rules import (
    cost_alerts,
    error_alerts,
    http_alerts,
    loki_rules,
    platform_alerts,
    slo_rules,
)
from alert_rules.config import PROFILES, AlertConfig
from alert_rules.render import to_yaml
from alert_rules.rule import group
from alert_rules.unit_tests import Scenario, test_file

DEFAULT_OUT = Path(__file__).resolve().parent / "generated"
COMMAND = "python -m alert_rules.build"
PROMETHEUS_RULE_FILES = ("prometheus/alerts.yml", "prometheus/slo.yml")

_SCENARIOS: dict[str, Callable[[AlertConfig], list[Scenario]]] = {
    "high_error_rate": http_alerts.error_rate_scenarios,
    "slow_responses": http_alerts.latency_scenarios,
    "critical_error_pattern": error_alerts.critical_error_scenarios,
    "cost_anomaly": cost_alerts.cost_scenarios,
    "target_down": platform_alerts.target_down_scenarios,
    "high_memory_usage": platform_alerts.memory_scenarios,
    "error_budget_burn": slo_rules.burn_scenarios,
}

# A day of history evaluated every minute makes promtool slow; the cost rules only look at
# hours, so five minutes resolves them well.
_EVALUATION_INTERVAL = {"cost_anomaly": "5m"}


def alerts_document(config: AlertConfig) -> dict[str, Any]:
    return {
        "groups": [
            group(
                "corrstack-http",
                [
                    http_alerts.high_error_rate(config).rule(config),
                    http_alerts.slow_responses(config).rule(config),
                ],
            ),
            group("corrstack-errors", [error_alerts.critical_error_pattern(config).rule(config)]),
            group(
                "corrstack-cost",
                [
                    *cost_alerts.cost_recording_rules(config),
                    cost_alerts.cost_anomaly(config).rule(config),
                ],
            ),
            group(
                "corrstack-platform",
                [
                    platform_alerts.target_down(config).rule(config),
                    platform_alerts.high_memory_usage(config).rule(config),
                ],
            ),
        ]
    }


def slo_document(config: AlertConfig) -> dict[str, Any]:
    # Recording rules and the alerts reading them share a group: rules in a group run in
    # order, so an alert never sees the previous evaluation's ratio.
    return {
        "groups": [
            group(
                f"corrstack-slo-{slo.name}",
                [
                    *slo_rules.recording_rules(config, slo),
                    *(spec.rule(config) for spec in slo_rules.burn_alerts(config, slo)),
                ],
            )
            for slo in slo_rules.slos(config)
        ]
    }


def loki_document(config: AlertConfig) -> dict[str, Any]:
    return {"groups": [group("corrstack-logs", [loki_rules.error_log_spike(config).rule(config)])]}


def generated_files(config: AlertConfig, *, unit_tests: bool = True) -> dict[str, str]:
    """{relative path: file text} for everything the build writes."""
    files = {
        "prometheus/alerts.yml": to_yaml(alerts_document(config)),
        "prometheus/slo.yml": to_yaml(slo_document(config)),
        "loki/rules.yml": to_yaml(loki_document(config)),
    }
    if unit_tests:
        rule_files = [f"../{path}" for path in PROMETHEUS_RULE_FILES]
        for name, scenarios in _SCENARIOS.items():
            interval = _EVALUATION_INTERVAL.get(name, "1m")
            document = test_file(rule_files, scenarios(config), interval)
            files[f"tests/{name}.yml"] = to_yaml(document)
    return files


def write_files(out: Path, files: dict[str, str]) -> None:
    for relative, text in sorted(files.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def stale_files(out: Path, files: dict[str, str]) -> list[str]:
    """Paths under `out` that differ from `files`, are missing, or are no longer generated."""
    stale = [
        relative
        for relative, text in sorted(files.items())
        if not (out / relative).is_file() or (out / relative).read_text(encoding="utf-8") != text
    ]
    existing = {str(p.relative_to(out)) for p in out.rglob("*.yml")} if out.is_dir() else set()
    return stale + sorted(existing - set(files))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if --out is stale"
    )
    args = parser.parse_args(argv)
    config = PROFILES[args.profile]
    # The promtool tests are written for minute-scale windows; the drill profile has none.
    files = generated_files(config, unit_tests=args.profile == "default")
    if args.check:
        stale = stale_files(args.out, files)
        if stale:
            rerun = COMMAND if args.out == DEFAULT_OUT else f"{COMMAND} --out {args.out}"
            print(f"stale generated rule files in {args.out}:", file=sys.stderr)
            for relative in stale:
                print(f"  {relative}", file=sys.stderr)
            print(f"regenerate with: {rerun}", file=sys.stderr)
            return 1
        return 0
    write_files(args.out, files)
    return 0


def build_into_temp() -> Path:
    """Build the default profile into a fresh temp dir (tests compare it with the committed)."""
    out = Path(tempfile.mkdtemp(prefix="alert_rules-"))
    write_files(out, generated_files(PROFILES["default"]))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
