"""Running a grid: one cluster per setting, every workload on it, each compute measured.

For each setting of the grid (:meth:`~dask_serverless.experiments.grid.Grid.settings`), in
order, one cluster is opened (``LocalCluster`` or ``LambdaCluster`` with the setting's memory
size and concurrency limit and the platform's options), every workload runs ``warmup`` times
then ``runs`` times on it, alternating between the workloads (run 1 of each, then run 2...),
and the cluster is closed before the next setting opens. A fresh local cluster starts its
workers at its first compute (``prewarm=False`` unless the options say otherwise), so the
warm-up runs carry the cold starts of the setting, as the first computes on new Lambda
functions do.

Each compute is :func:`~dask_serverless.benchmark.measuring.measure_run`, the harness's own
unit: timed, checked against Dask's ``sync`` result (computed once per workload, untimed, when
``check`` is on) and with the cluster's run report. Its rows go to a :class:`Collector`: one
row per compute in ``runs`` (warm-ups flagged) and one per invocation in ``invocations``. A
compute that fails is a row with its ``error``; the experiment goes on. A cluster that cannot
start stops the experiment (what ran is kept, and saved when an output folder was given).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dask_serverless.benchmark.measuring import REFERENCE, RunResult, compute, measure_run
from dask_serverless.benchmark.workloads import Built
from dask_serverless.experiments.grid import Grid, Setting
from dask_serverless.experiments.progress import Progress

#: The coordinates of a run, first in every row of both tables.
COORDINATES = ("workload", "platform", "memory_mb", "max_concurrency", "run", "warmup")

#: The first columns of ``runs``, after the coordinates; the run report's other figures follow.
LEADING_RUN_COLUMNS = (
    "seconds",
    "check",
    "error",
    "run_id",
    "cost_dollars",
    "cost_lambda_compute",
    "cost_lambda_requests",
    "cost_store_requests",
    "cost_queue_requests",
    "gb_seconds",
    "cold_starts",
    "instances",
    "peak_memory_bytes",
)


@dataclass
class Collector:
    """Rows as they are measured."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    invocations: list[Any] = field(default_factory=list)

    def add(self, coordinates: dict[str, Any], result: RunResult) -> None:
        row = {**coordinates, **run_figures(result)}
        self.runs.append(row)
        report = result.report
        if report is None:
            return
        invocations = report.invocations.drop(columns=["memory_mb"], errors="ignore")
        if invocations.empty:
            return
        invocations = invocations.copy()
        # From the invocation's start being asked for to its last report.
        invocations["latency_s"] = invocations["wait_s"] + invocations["duration_s"]
        for position, name in enumerate(COORDINATES):
            invocations.insert(position, name, coordinates[name])
        invocations.insert(len(COORDINATES), "run_id", row.get("run_id"))
        self.invocations.append(invocations)


def run_figures(result: RunResult) -> dict[str, Any]:
    """A compute's row of ``runs`` without its coordinates: the harness's row
    (:meth:`RunResult.as_row`) and, from the run report, its cost by item, GB-seconds, cold
    starts, instances and the largest peak memory of a function instance."""
    figures: dict[str, Any] = dict.fromkeys(LEADING_RUN_COLUMNS)
    figures.update(result.as_row())
    report = result.report
    if report is not None:
        invocations = report.invocations
        figures["cold_starts"] = int(invocations["cold"].sum()) if len(invocations) else 0
        figures["instances"] = int(invocations["instance"].nunique()) if len(invocations) else 0
        if len(invocations):
            figures["peak_memory_bytes"] = int(invocations["peak_memory_bytes"].max())
        try:
            cost = report.cost
        except ValueError:  # a region or architecture the price table lacks
            cost = None
        if cost is not None:
            figures["cost_dollars"] = cost.total
            for item, dollars in cost.items.items():
                figures[f"cost_{item}"] = dollars
            figures["gb_seconds"] = cost.details.get("gb_seconds")
    return figures


def open_cluster(setting: Setting, options: dict[str, Any]) -> Any:
    """The (unstarted) cluster of a setting."""
    if setting.platform == "local":
        from dask_serverless.cluster import LocalCluster

        return LocalCluster(
            max_concurrency=setting.max_concurrency,
            memory_mb=setting.memory_mb,
            **{"prewarm": False, **options},
        )
    from dask_serverless.lambda_cluster import LambdaCluster

    return LambdaCluster(
        memory_mb=setting.memory_mb, max_concurrency=setting.max_concurrency, **options
    )


@contextmanager
def running_cluster(setting: Setting, options: dict[str, Any]) -> Iterator[Any]:
    """A started cluster of the setting, closed on the way out (also after Ctrl-C)."""
    cluster = open_cluster(setting, options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def run_grid(
    grid: Grid,
    built: Mapping[str, Built],
    collector: Collector,
    progress: Progress,
    check: bool,
) -> None:
    """Run every setting of the grid on the built workloads (by name), adding rows to
    ``collector`` as they come."""
    collections = {name: entry.collection for name, entry in built.items()}
    references: dict[str, Any] = {}
    if check:
        for name, collection in collections.items():
            progress.show(f"{name}: reference result on {REFERENCE}")
            references[name], _ = compute(collection, REFERENCE)
    for setting in grid.settings():
        progress.show(f"starting a cluster: {setting}")
        options = dict(grid.cluster_options.get(setting.platform, {}))
        with running_cluster(setting, options) as cluster:
            for number in range(1, grid.warmup + grid.runs + 1):
                warmup = number <= grid.warmup
                for name, collection in collections.items():
                    result = measure_run(
                        collection, cluster.get, reference=references.get(name), cluster=cluster
                    )
                    coordinates = {
                        "workload": name,
                        "platform": setting.platform,
                        "memory_mb": setting.memory_mb,
                        "max_concurrency": cluster.max_concurrency,
                        "run": number,
                        "warmup": warmup,
                    }
                    collector.add(coordinates, result)
                    kind = "warm-up" if warmup else "run"
                    outcome = "failed" if result.failed else f"{result.seconds:.3f} s"
                    progress.advance(not warmup, f"{name}, {setting}: {kind} {outcome}")
