"""Calibration of the ``local`` model: every benchmark workload computed on a ``LocalCluster``
and simulated on the ``local`` model with the real run's own task costs; the table says how
far the prediction is from the measurement, and the figures below it are what the records
say of the platform (cold starts, waits, per-task and per-batch time outside the tasks).
The model's per-task times (a function's between two tasks, the client's graph and plan) are
those the same runs measure, as the machine runs today (``--fixed``: the model's own).
For an array workload, a second prediction costs its tasks from Dask's metadata alone
(:mod:`dask_serverless.simulation.arrays`): what a graph never run here would get.

    python -m dask_serverless.simulation.calibrate [--small] [--workloads a,b] [--fixed]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from dask_serverless.benchmark.workloads import WORKLOAD_NAMES, workload
from dask_serverless.simulation import simulate

COLUMNS = (
    "workload", "tasks", "batches", "measured s", "predicted s", "error",
    "invocations measured", "predicted", "function store operations measured", "predicted",
    "from metadata s", "error",
)  # fmt: skip


def parse_arguments(arguments: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dask_serverless.simulation.calibrate")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--workloads", help="comma-separated (default: every one with a graph)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per workload")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument(
        "--fixed",
        action="store_true",
        help="predict with the local model's own per-task times, not those these runs measure",
    )
    return parser.parse_args(arguments)


@dataclasses.dataclass
class Measured:
    """A workload's median measured run."""

    name: str
    collection: Any
    seconds: float
    report: Any


def run_workload(name: str, small: bool, runs: int, cluster: Any) -> Measured:
    """A workload computed once to warm up, then ``runs`` times; the median run is kept."""
    import dask

    build = workload(name).build
    if build is None:
        raise ValueError(f"workload {name!r} computes no Dask collection")
    built = build(small)
    dask.compute(built.collection, scheduler=cluster.get)  # warm-up: imports, cold starts
    measured = []
    for _ in range(runs):
        started = time.perf_counter()
        dask.compute(built.collection, scheduler=cluster.get)
        measured.append((time.perf_counter() - started, cluster.last_run))
    measured.sort(key=lambda entry: entry[0])
    seconds, report = measured[len(measured) // 2]
    return Measured(name, built.collection, seconds, report)


def predict(
    measured: Measured, cluster: Any, parameters: dict[str, float] | None = None
) -> dict[str, Any]:
    """A measured run beside its simulation on the ``local`` model (with ``parameters``
    overriding the model's), from the run's own task costs and from metadata alone."""
    import dask.array

    settings = {
        "memory_mb": cluster.memory_mb,
        "max_concurrency": cluster.max_concurrency,
        "parallelism": cluster.parallelism,
        "batches_per_function": cluster.batches_per_function,
        "timeout_s": cluster.timeout_s,
        "parameters": parameters,
    }
    report, seconds, collection = measured.report, measured.seconds, measured.collection
    predicted = simulate(collection, "local", task_costs=report, **settings)
    from_metadata = float("nan")
    if isinstance(collection, dask.array.Array):
        simulated = simulate(collection, "local", task_costs="metadata", **settings)
        from_metadata = simulated.total_seconds
    return {
        "workload": measured.name,
        "tasks": report["tasks"],
        "batches": report["batches"],
        "measured s": seconds,
        "predicted s": predicted.total_seconds,
        "error": predicted.total_seconds / seconds - 1,
        "invocations measured": report["invocations"],
        "invocations predicted": predicted["invocations"],
        "store operations measured": _function_operations(report),
        "store operations predicted": _function_operations(predicted),
        "from metadata s": from_metadata,
        "metadata error": from_metadata / seconds - 1,
    }


def measure(name: str, small: bool, runs: int, cluster: Any) -> tuple[dict[str, Any], Any]:
    """The median measured run of a workload and its simulation on the ``local`` model."""
    measured = run_workload(name, small, runs, cluster)
    return predict(measured, cluster), measured.report


def measured_parameters(reports: list[Any]) -> dict[str, float]:
    """The ``local`` model's per-task times as these runs' records give them: a function's
    time between two tasks, and the client's graph and plan per task, over the runs of
    10,000 tasks or more (where they dominate the fixed parts); none without such runs."""
    large = [report for report in reports if report["tasks"] >= 10_000]
    if not large:
        return {}
    return {
        "function_task_overhead_us": platform_figures(large)["between tasks per task us"],
        "client_graph_per_task_us": statistics.median(
            (report["ingest_seconds"] + report["plan_seconds"]) / report["tasks"] * 1e6
            for report in large
        ),
    }


def _function_operations(report: Any) -> int:
    """Store operations of the functions, from the batch records."""
    columns = report._records["batches"]
    return sum(
        sum(columns[name])
        for name in ("store_reads", "store_writes", "store_deletes", "store_fan_ins")
    )


def platform_figures(reports: list[Any]) -> dict[str, float]:
    """What the real runs' records say of the platform, over every report."""
    init, wait, between, loading, finishing = [], [], [], [], []
    tasks = 0
    for report in reports:
        invocations = report.invocations
        init += [float(value) for value in invocations["init_s"].dropna()]
        wait += [float(value) for value in invocations["wait_s"].dropna()]
        phases = report.phases
        tasks += len(report.tasks)
        between.append(float(phases.loc[phases["phase"] == "between tasks", "duration_s"].sum()))
        loading.append(float(phases.loc[phases["phase"] == "loading", "duration_s"].sum()))
        finishing.append(
            float(
                phases.loc[
                    phases["phase"].isin(
                        ["marking done", "fan-in", "invoking", "reporting", "finishing"]
                    ),
                    "duration_s",
                ].sum()
            )
        )
    batches = sum(report["batches"] for report in reports)
    return {
        "cold start median s": statistics.median(init) if init else float("nan"),
        "wait median s": statistics.median(wait) if wait else float("nan"),
        "between tasks per task us": sum(between) / max(tasks, 1) * 1e6,
        "loading per batch ms": sum(loading) / max(batches, 1) * 1e3,
        "finishing per batch ms": sum(finishing) / max(batches, 1) * 1e3,
    }


def main(arguments: list[str] | None = None) -> int:
    options = parse_arguments(arguments)
    names = (
        options.workloads.split(",")
        if options.workloads
        else [name for name in WORKLOAD_NAMES if workload(name).build is not None]
    )
    from dask_serverless import LocalCluster

    runs: list[Measured] = []
    with LocalCluster() as cluster:
        for name in names:
            if workload(name).missing_requirements():
                print(f"{name}: skipped, needs {workload(name).missing_requirements()}")
                continue
            runs.append(run_workload(name, options.small, options.runs, cluster))
            print(f"{name}: measured {runs[-1].seconds:.3f} s", flush=True)
        reports = [run.report for run in runs]
        figures = platform_figures(reports)
        for name, value in figures.items():
            print(f"  {name}: {value:.4g}")
        parameters = None if options.fixed else measured_parameters(reports) or None
        print(f"  the local model's parameters measured by these runs: {parameters}")
        rows = []
        for run in runs:
            row = predict(run, cluster, parameters)
            rows.append(row)
            print(
                f"{row['workload']}: measured {row['measured s']:.3f} s, predicted "
                f"{row['predicted s']:.3f} s ({row['error']:+.1%}); invocations "
                f"{row['invocations measured']} / {row['invocations predicted']}, store "
                f"operations {row['store operations measured']} / "
                f"{row['store operations predicted']}; from metadata alone "
                f"{row['from metadata s']:.3f} s ({row['metadata error']:+.1%})",
                flush=True,
            )
    if options.markdown is not None:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
        for row in rows:
            values = list(row.values())
            cells = [
                "n/a" if isinstance(value, float) and value != value else
                f"{value:+.1%}" if key.endswith("error") else
                f"{value:.3f}" if isinstance(value, float) else f"{value:,}"
                if isinstance(value, int) else str(value)
                for key, value in zip(row, values, strict=True)
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        options.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
