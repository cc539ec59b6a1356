"""Write Grafana's side of the stack: `python -m dashboards.build [--out DIR] [--check]`.

One file per dashboard, `dashboards/generated/<uid>.json`, deterministic (sorted keys,
two-space indent, trailing newline), so the committed files change only when a dashboard does;
and the datasources provisioning file, `config/grafana/provisioning/datasources/corrstack.yml`
(`dashboards.datasources`), whose links must agree with the dashboards; and both as
ConfigMaps for Grafana's sidecars in deploy/kubernetes/generated/ (`dashboards.kubernetes`,
the datasources with the cluster's URLs). `--out DIR` writes the files into DIR and the
ConfigMaps into DIR/kubernetes. `--check` writes nothing: it exits 1 and names every file
that differs from what the code would write (`codegen`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from codegen import Generator
from codegen.kubernetes import KUBERNETES_OUT, files_of, kubernetes_out
from dashboards import config, kubernetes
from dashboards.business import business
from dashboards.datasources import FILE_NAME, datasources_file
from dashboards.errors import errors
from dashboards.request_trace import request_trace
from dashboards.service_overview import service_overview
from dashboards.system_health import system_health
from instrumentation.vocabulary import DASHBOARD_UIDS

_ROOT = Path(__file__).resolve().parent.parent
GENERATOR = Generator(
    "dashboards", "python -m dashboards.build", _ROOT / "dashboards" / "generated"
)
# Grafana's datasources directory also takes the user's own files (a Tempo of theirs, say):
# the build answers for its one file there and leaves the others alone.
DATASOURCES = Generator(
    "datasource provisioning files",
    GENERATOR.command,
    _ROOT / "config" / "grafana" / "provisioning" / "datasources",
    owns_out=False,
)
# deploy/kubernetes/generated/ is shared with alert_rules.build: each answers for its own files.
KUBERNETES = Generator("Kubernetes object files", GENERATOR.command, KUBERNETES_OUT, owns_out=False)
COMMAND = GENERATOR.command
FACTORIES = (service_overview, errors, request_trace, system_health, business)


def render(model: Dashboard) -> str:
    """The dashboard as deterministic JSON; panels are numbered 1, 2, … in layout order."""
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def render_all() -> dict[str, str]:
    """{file name: JSON text} for every dashboard, one per uid of the stack's vocabulary."""
    config.validate()
    models = [factory().build() for factory in FACTORIES]
    uids = sorted(str(model.uid) for model in models)
    if uids != sorted(DASHBOARD_UIDS):
        raise ValueError(
            f"the dashboards build uids {uids}, the stack has {sorted(DASHBOARD_UIDS)}"
        )
    return {f"{model.uid}.json": render(model) for model in models}


def render_datasources() -> dict[str, str]:
    """{file name: YAML text} of the datasources provisioning, with `config.TRACE_BACKEND`."""
    return {FILE_NAME: datasources_file(config.TRACE_BACKEND)}


def render_kubernetes() -> dict[str, str]:
    """{file name: YAML text} of the sidecars' ConfigMaps, and the kustomization."""
    cluster = {FILE_NAME: datasources_file(config.CLUSTER_TRACE_BACKEND, config.CLUSTER)}
    objects = {
        kubernetes.DASHBOARDS_FILE: kubernetes.dashboard_config_maps(render_all()),
        kubernetes.DATASOURCES_FILE: [kubernetes.datasources_config_map(cluster)],
    }
    return files_of(COMMAND, objects)


def main(argv: Sequence[str] | None = None) -> int:
    parser = GENERATOR.argument_parser(
        "Write the Grafana dashboards and the datasources provisioning file."
    )
    args = parser.parse_args(argv)
    dashboards_status = GENERATOR.run(render_all(), args.out, check=args.check)
    # `--out DIR` takes every file of the build, so nothing lands in the repository.
    default = args.out.resolve() == GENERATOR.default_out.resolve()
    datasources_out = DATASOURCES.default_out if default else args.out
    datasources_status = DATASOURCES.run(render_datasources(), datasources_out, check=args.check)
    kubernetes_status = KUBERNETES.run(
        render_kubernetes(),
        kubernetes_out(args.out, GENERATOR.default_out),
        check=args.check,
        rerun=GENERATOR.rerun_command(args.out),
    )
    return max(dashboards_status, datasources_status, kubernetes_status)


if __name__ == "__main__":
    sys.exit(main())
