"""The real grammars: promtool for PromQL, @grafana/lezer-logql for LogQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml

LOGQL_DIR = Path(__file__).resolve().parent.parent / "logql"

# Grafana macros, replaced by values of the right type before a grammar sees the query.
_MACROS = {
    "$__rate_interval": "5m",
    "$__interval_ms": "60000",
    "$__interval": "1m",
    "$__range_s": "3600",
    "$__range_ms": "3600000",
    "$__range": "1h",
    "$__auto": "1m",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute_grafana_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana macros, then dashboard variables (`$service`, `${route:regex}`)."""
    for macro, value in _MACROS.items():
        expr = expr.replace(macro, value)
    values = values or {}
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), "x"), expr)


def promql_errors(expressions: Iterable[str]) -> str:
    """promtool's complaints about `expressions` (wrapped as recording rules); '' when valid."""
    rules = [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(expressions)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exprs.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
        result = subprocess.run(
            [_binary("promtool"), "check", "rules", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def logql_errors(queries: Iterable[str]) -> dict[str, list[dict[str, object]]]:
    """{query: parse errors} for every query that does not parse; empty when all do."""
    queries = list(queries)
    result = subprocess.run(
        [_binary("node"), str(LOGQL_DIR / "check.mjs")],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        check=True,
        cwd=LOGQL_DIR,
    )
    return {r["query"]: r["errors"] for r in json.loads(result.stdout) if r["errors"]}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not on PATH (.ci/run installs it)")
    return path
