"""Medians, overheads, ratios and the targets, as JSON and as markdown tables."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.multiprocess_mode import name as multiprocess_name
from benchmarks.multiprocess_mode import split

BARE = "bare"
OURS = "corrstack"
PEER = "prometheus_fastapi_instrumentator"  # the peer with a multiprocess mode of its own
OTEL = "opentelemetry"
OURS_WITH_OTEL = "corrstack_opentelemetry"  # corrstack added to a service OpenTelemetry traces


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None  # None: an input was not measured or the ratio is undefined
    limit: float
    at_most: bool

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        ok = self.value <= self.limit if self.at_most else self.value >= self.limit
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(result[key] for result in rounds)


def inprocess_summary(
    rounds: dict[str, list[dict[str, float]]], ours: str = OURS
) -> dict[str, Any]:
    """CPU µs/request (median of rounds), overhead over bare, `ours`'s overhead ÷ each one's."""
    medians = {name: _median(results, "cpu_us") for name, results in rounds.items()}
    bare = medians.get(BARE)
    overheads = {name: None if bare is None else us - bare for name, us in medians.items()}
    our_overhead = overheads.get(ours)
    apps = {
        name: {
            "us_per_request": medians[name],
            "wall_us_per_request": _median(results, "wall_us"),
            "overhead_us": overheads[name],
            "corrstack_overhead_ratio": (
                None
                if name in (BARE, ours, OURS_WITH_OTEL)
                else _ratio(our_overhead, overheads[name])
            ),
            "rounds": results,
        }
        for name, results in rounds.items()
    }
    gc_figures = gc_per_10000_requests(rounds)
    for name, figures in gc_figures.items():
        apps[name]["per_10000_requests"] = figures
    summary: dict[str, Any] = {"apps": apps}
    if OURS_WITH_OTEL in rounds:
        summary["beside_opentelemetry"] = beside_opentelemetry(medians, rounds, "cpu_us")
    return summary


GC_FIGURES = (
    "gc_gen0_collections",
    "gc_gen1_collections",
    "gc_gen2_collections",
    "gc_cyclic_garbage_objects",
    "net_allocated_blocks",
)


def gc_per_10000_requests(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Each app's GC and allocation figures per 10 000 requests (median of rounds), bare's
    beside them and the difference; apps whose rounds lack a figure are left out."""
    medians = {
        name: {key: _median(results, key) for key in GC_FIGURES}
        for name, results in rounds.items()
        if results and all(key in result for result in results for key in GC_FIGURES)
    }
    bare = medians.get(BARE)
    return {
        name: {
            **figures,
            "bare": bare,
            "minus_bare": None if bare is None else {k: v - bare[k] for k, v in figures.items()},
        }
        for name, figures in medians.items()
    }


def beside_opentelemetry(
    costs: dict[str, float], rounds: dict[str, list[dict[str, float]]], key: str
) -> dict[str, Any]:
    """corrstack's cost next to OpenTelemetry against alone, from each app's µs per request.

    Overheads are over bare; what corrstack adds to a traced service is corrstack +
    OpenTelemetry − OpenTelemetry, from the medians and, paired, round by round (the two were
    measured in the same rounds). A missing app makes its figures None.
    """

    def over(app: str, base: str) -> float | None:
        if app not in costs or base not in costs:
            return None
        return costs[app] - costs[base]

    alone = over(OURS, BARE)
    added = over(OURS_WITH_OTEL, OTEL)
    by_round = (
        [
            ours[key] - otel[key]
            for ours, otel in zip(rounds[OURS_WITH_OTEL], rounds[OTEL], strict=True)
        ]
        if OURS_WITH_OTEL in rounds and OTEL in rounds
        else None
    )
    return {
        "corrstack_overhead_us": alone,
        "opentelemetry_overhead_us": over(OTEL, BARE),
        "corrstack_opentelemetry_overhead_us": over(OURS_WITH_OTEL, BARE),
        "corrstack_added_to_opentelemetry_us": added,
        "added_to_opentelemetry_vs_alone": _ratio(added, alone),
        "corrstack_added_to_opentelemetry_by_round_us": by_round,
    }


def multiprocess_summary(
    rounds: dict[str, list[dict[str, float]]], single_process: dict[str, Any] | None
) -> dict[str, Any]:
    """As `inprocess_summary`, for the apps in multiprocess mode (overheads over the same bare),
    with each app's single-process overhead beside it when the in-process part measured it."""
    summary = inprocess_summary(rounds, ours=multiprocess_name(OURS))
    measured = (single_process or {}).get("apps", {})
    for name, app in summary["apps"].items():
        if name == BARE:
            continue
        alone: float | None = measured.get(split(name)[0], {}).get("overhead_us")
        app["single_process_overhead_us"] = alone
        overhead = app["overhead_us"]
        app["added_by_multiprocess_us"] = (
            None if alone is None or overhead is None else overhead - alone
        )
    return summary


HTTP_FIGURES = ("requests_per_second", "p99_ms", "server_cpu_us_per_request")
# The uvicorn process's collector during wrk (`benchmarks.served`): per 10 000 requests, and
# the longest collection in ms.
HTTP_GC_FIGURES = (
    "gc_gen0_collections",
    "gc_gen1_collections",
    "gc_gen2_collections",
    "gc_ms",
    "gc_longest_ms",
)


def http_summary(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """req/s and p99 (medians of rounds), each as a ratio to bare, and the server's collector
    figures (medians of rounds)."""
    medians = {
        name: {
            key: _median(results, key)
            for key in (*HTTP_FIGURES, *HTTP_GC_FIGURES)
            if all(key in result for result in results)
        }
        for name, results in rounds.items()
    }
    bare = medians.get(BARE, {})
    apps = {
        name: {
            **figures,
            "throughput_vs_bare": _ratio(
                figures["requests_per_second"], bare.get("requests_per_second")
            ),
            "p99_vs_bare": _ratio(figures["p99_ms"], bare.get("p99_ms")),
            "rounds": rounds[name],
        }
        for name, figures in medians.items()
    }
    summary: dict[str, Any] = {"apps": apps}
    if OURS_WITH_OTEL in rounds:
        cpu = {name: figures["server_cpu_us_per_request"] for name, figures in medians.items()}
        summary["beside_opentelemetry"] = beside_opentelemetry(
            cpu, rounds, "server_cpu_us_per_request"
        )
    return summary


def records_summary(rounds: dict[str, list[dict[str, float]]], baseline: str) -> dict[str, Any]:
    """CPU µs/record (median of rounds) and each as a ratio to the stdlib Formatter."""
    medians = {name: _median(results, "cpu_us") for name, results in rounds.items()}
    base = medians.get(baseline)
    return {
        "formatters": {
            name: {
                "us_per_record": us,
                "wall_us_per_record": _median(rounds[name], "wall_us"),
                "vs_stdlib": _ratio(us, base),
                "rounds": rounds[name],
            }
            for name, us in medians.items()
        }
    }


def targets(results: dict[str, Any]) -> list[Target]:
    """The targets of issue 17, each a ratio measured in this run (HTTP: corrstack's ratio to
    bare against the instrumentator's ratio to bare, so the limit comes from the run too)."""
    inprocess = results.get("inprocess", {}).get("apps", {})
    multiprocess = results.get("multiprocess", {}).get("apps", {})
    records = results.get("records", {}).get("formatters", {})
    http = results.get("http", {}).get("apps", {})

    def overhead_ratio(peer: str) -> float | None:
        ratio: float | None = inprocess.get(peer, {}).get("corrstack_overhead_ratio")
        return ratio

    def http_ratio(app: str, key: str) -> float | None:
        ratio: float | None = http.get(app, {}).get(key)
        return ratio

    def against_peer(key: str) -> tuple[float | None, float]:
        ours, peer = http_ratio(OURS, key), http_ratio(PEER, key)
        return (ours, peer) if peer is not None else (None, math.nan)

    throughput, throughput_limit = against_peer("throughput_vs_bare")
    p99, p99_limit = against_peer("p99_vs_bare")
    return [
        Target(
            "in-process overhead ÷ prometheus-fastapi-instrumentator's",
            overhead_ratio(PEER),
            limit=0.9,
            at_most=True,
        ),
        Target(
            "in-process overhead ÷ asgi-correlation-id + python-json-logger's",
            overhead_ratio("asgi_correlation_id"),
            limit=0.5,
            at_most=True,
        ),
        Target(
            "multiprocess-mode overhead ÷ prometheus-fastapi-instrumentator's in that mode",
            multiprocess.get(multiprocess_name(PEER), {}).get("corrstack_overhead_ratio"),
            limit=1.0,
            at_most=True,
        ),
        Target(
            "JSON record with full context ÷ stdlib Formatter record (plain logging.getLogger)",
            records.get(OURS, {}).get("vs_stdlib"),
            limit=1.0,
            at_most=True,
        ),
        Target(
            "JSON record with full context ÷ stdlib Formatter record (get_logger)",
            records.get(f"{OURS}_get_logger", {}).get("vs_stdlib"),
            limit=1.0,
            at_most=True,
        ),
        Target(
            "HTTP req/s ÷ bare, at least the instrumentator's",
            throughput,
            limit=throughput_limit,
            at_most=False,
        ),
        Target(
            "HTTP p99 ÷ bare, at most the instrumentator's",
            p99,
            limit=p99_limit,
            at_most=True,
        ),
    ]


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _beside_opentelemetry_table(title: str, beside: dict[str, Any]) -> list[str]:
    by_round = beside["corrstack_added_to_opentelemetry_by_round_us"]
    spread = f"{_num(min(by_round))} – {_num(max(by_round))}" if by_round else "–"
    return [
        title,
        "",
        "| | µs/request |",
        "|---|---:|",
        f"| corrstack alone: overhead over bare | {_num(beside['corrstack_overhead_us'])} |",
        "| OpenTelemetry alone: overhead over bare "
        f"| {_num(beside['opentelemetry_overhead_us'])} |",
        "| corrstack + OpenTelemetry: overhead over bare "
        f"| {_num(beside['corrstack_opentelemetry_overhead_us'])} |",
        "| corrstack on top of OpenTelemetry (corrstack + OpenTelemetry − OpenTelemetry) "
        f"| {_num(beside['corrstack_added_to_opentelemetry_us'])} |",
        f"| … the same, round by round (min – max) | {spread} |",
        "| … ÷ corrstack alone's overhead "
        f"| {_num(beside['added_to_opentelemetry_vs_alone'], 2)} |",
        "",
    ]


def _gc_table(apps: dict[str, Any]) -> list[str]:
    """Per app: collections per generation, cyclic garbage and net allocated blocks per 10 000
    requests, each as `app (bare, ±difference)`."""
    measured = {
        name: app["per_10000_requests"] for name, app in apps.items() if "per_10000_requests" in app
    }
    if not measured:
        return []

    def cell(figures: dict[str, Any], key: str) -> str:
        value = _num(figures[key], 0)
        if figures["bare"] is None or figures is measured.get(BARE):
            return value
        return f"{value} ({_num(figures['bare'][key], 0)}, {figures['minus_bare'][key]:+.0f})"

    out = [
        "### GC and allocations per 10 000 requests (untimed loop after the timed batches; "
        "median of rounds; each cell: app (bare, app − bare))",
        "",
        "| app | gen 0 collections | gen 1 | gen 2 | cyclic garbage objects "
        "| net allocated blocks |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in measured.items():
        cells = " | ".join(cell(figures, key) for key in GC_FIGURES)
        out.append(f"| {name} | {cells} |")
    return [*out, ""]


def _http_gc_table(apps: dict[str, Any]) -> list[str]:
    """Per app: the uvicorn process's collections per generation during wrk, the time they took
    per 10 000 requests and the longest one."""
    measured = {
        name: app for name, app in apps.items() if all(key in app for key in HTTP_GC_FIGURES)
    }
    if not measured:
        return []
    out = [
        "### GC over HTTP (the uvicorn process during wrk, per 10 000 requests; median of rounds)",
        "",
        "| app | gen 0 collections | gen 1 | gen 2 | collector ms | longest collection ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, app in measured.items():
        out.append(
            f"| {name} | {_num(app['gc_gen0_collections'], 0)} "
            f"| {_num(app['gc_gen1_collections'], 1)} | {_num(app['gc_gen2_collections'], 1)} "
            f"| {_num(app['gc_ms'], 1)} | {_num(app['gc_longest_ms'], 1)} |"
        )
    return [*out, ""]


def markdown(results: dict[str, Any]) -> str:
    """The tables of a run, for the terminal and docs/benchmarks.md."""
    out: list[str] = []
    if "inprocess" in results:
        out += [
            "### Per request, in-process (ASGI call, no sockets; CPU µs, median of rounds)",
            "",
            "| app | µs/request | wall µs | overhead µs | corrstack overhead ÷ this |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, app in results["inprocess"]["apps"].items():
            out.append(
                f"| {name} | {_num(app['us_per_request'])} | {_num(app['wall_us_per_request'])} "
                f"| {_num(app['overhead_us'])} | {_num(app['corrstack_overhead_ratio'], 2)} |"
            )
        out.append("")
        out += _gc_table(results["inprocess"]["apps"])
        if "beside_opentelemetry" in results["inprocess"]:
            out += _beside_opentelemetry_table(
                "### Beside OpenTelemetry, in-process (CPU µs, median of rounds)",
                results["inprocess"]["beside_opentelemetry"],
            )
    if "multiprocess" in results:
        out += [
            "### Per request, multiprocess mode (PROMETHEUS_MULTIPROC_DIR, a fresh directory per "
            "process; CPU µs, median of rounds)",
            "",
            "| app | µs/request | wall µs | overhead µs | single-process overhead µs "
            "| added by multiprocess µs | corrstack overhead ÷ this |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, app in results["multiprocess"]["apps"].items():
            out.append(
                f"| {name} | {_num(app['us_per_request'])} | {_num(app['wall_us_per_request'])} "
                f"| {_num(app['overhead_us'])} | {_num(app.get('single_process_overhead_us'))} "
                f"| {_num(app.get('added_by_multiprocess_us'))} "
                f"| {_num(app['corrstack_overhead_ratio'], 2)} |"
            )
        out.append("")
    if "http" in results:
        out += [
            "### Over HTTP (uvicorn, 1 worker; wrk -t1 -c50)",
            "",
            "| app | req/s | ÷ bare | p99 ms | ÷ bare | server CPU µs/request |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, app in results["http"]["apps"].items():
            out.append(
                f"| {name} | {_num(app['requests_per_second'], 0)} "
                f"| {_num(app['throughput_vs_bare'], 2)} | {_num(app['p99_ms'], 2)} "
                f"| {_num(app['p99_vs_bare'], 2)} | {_num(app['server_cpu_us_per_request'])} |"
            )
        out.append("")
        out += _http_gc_table(results["http"]["apps"])
        if "beside_opentelemetry" in results["http"]:
            out += _beside_opentelemetry_table(
                "### Beside OpenTelemetry, over HTTP (server CPU µs/request, median of rounds)",
                results["http"]["beside_opentelemetry"],
            )
    if "records" in results:
        out += [
            "### Per log record (logging handler to /dev/null; CPU µs, median of rounds)",
            "",
            "| formatter | µs/record | wall µs | ÷ stdlib Formatter |",
            "|---|---:|---:|---:|",
        ]
        for name, formatter in results["records"]["formatters"].items():
            out.append(
                f"| {name} | {_num(formatter['us_per_record'], 2)} "
                f"| {_num(formatter['wall_us_per_record'], 2)} "
                f"| {_num(formatter['vs_stdlib'], 2)} |"
            )
        out.append("")
    out += ["### Targets", "", "| target | ratio | limit | verdict |", "|---|---:|---:|---|"]
    for target in results["targets"]:
        sign = "≤" if target["at_most"] else "≥"
        out.append(
            f"| {target['name']} | {_num(target['value'], 2)} | {sign} {_num(target['limit'], 2)} "
            f"| {target['verdict']} |"
        )
    return "\n".join(out) + "\n"
