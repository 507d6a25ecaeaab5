"""Experiments: a grid of workloads x memory sizes x concurrency limits x platforms x runs.

In the manner of FaaSET (the function-as-a-service experiment toolkit), an experiment runs
every combination of its settings several times and keeps every figure of every run::

    import dask_serverless

    result = dask_serverless.experiment(
        workloads=["gemm"], small=True, memory_mb=[512, 1024, 2048, 3008],
        max_concurrency=[2], runs=5, output="memory-sweep",
    )
    result.runs           # one row per compute (pandas)
    result.invocations    # one row per invocation
    result.summary()      # medians of time and cost per setting

or, from a configuration file, ``dask-serverless experiment CONFIG`` (see
:mod:`~dask_serverless.experiments.grid` for the file, :mod:`~dask_serverless.experiments.cli`
for the command).

The model
---------
* The **grid** (:mod:`~dask_serverless.experiments.grid`): workloads (the benchmark's
  catalogue by name, or callables returning a Dask collection), memory sizes, concurrency
  limits, platforms (``local``; ``lambda`` with ``lambda_options``, e.g. ``region`` and the
  ``endpoint_url`` of an AWS-compatible endpoint, or AWS credentials the standard way), warm-up
  and timed runs. A *setting* is one platform, memory size and concurrency limit: one cluster.
* **Running** (:mod:`~dask_serverless.experiments.running`): one cluster per setting, reused
  for all of its runs, every workload ``warmup`` times (flagged, left out of the figures: they
  pay for workers starting and importing Dask) then ``runs`` times; each compute measured by
  the benchmark's own :func:`~dask_serverless.benchmark.measuring.measure_run`, so the harness
  and the experiments share one catalogue and one way of measuring. Progress goes to standard
  error (:mod:`~dask_serverless.experiments.progress`).
* **Results** (:mod:`~dask_serverless.experiments.results`): ``runs`` and ``invocations``,
  tidy tables with each run's coordinates, built from each compute's
  :class:`~dask_serverless.report.RunReport`; ``summary()``; ``save(folder)`` writes CSV,
  Parquet, JSON and the PNG plots (:mod:`~dask_serverless.experiments.plots`).

On the local platform ``memory_mb`` is a limit on each worker's resident memory, and the cost
is priced as if on Lambda at that size; unlike Lambda, a larger size gives a function no more
CPU (``threads_per_function`` and the machine's cores decide that). docs/experiments.md says
what a memory sweep can and cannot show here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dask_serverless.experiments.grid import Grid, load_config, make_grid
from dask_serverless.experiments.progress import Progress
from dask_serverless.experiments.results import (
    ExperimentResult,
    describe_where,
    invocations_frame,
    runs_frame,
)
from dask_serverless.experiments.running import Collector, run_grid

#: FaaSET's memory sweep, the default memory sizes.
MEMORY_SWEEP_MB = (512, 1024, 2048, 3008)


def experiment(
    workloads: Sequence[str | Callable[[], Any]],
    memory_mb: Sequence[int] = MEMORY_SWEEP_MB,
    max_concurrency: Sequence[int | None] = (None,),
    runs: int = 5,
    platforms: Sequence[str] = ("local",),
    warmup: int = 1,
    output: str | Path | None = None,
    *,
    small: bool = False,
    check: bool = True,
    progress: bool = True,
    local_options: Mapping[str, Any] | None = None,
    lambda_options: Mapping[str, Any] | None = None,
) -> ExperimentResult:
    """Run a grid of workloads x memory sizes x concurrency limits x platforms, ``warmup``
    then ``runs`` computes of each, and return the tables (see the module documentation).

    Parameters
    ----------
    workloads:
        Names of the benchmark's catalogue (``"gemm"``, ``"svd-compressed"``...),
        ``"module:function"``, or callables of no argument returning a Dask collection.
    memory_mb, max_concurrency:
        The memory sizes and concurrency limits of the grid (``None``: the cluster's default).
    runs, warmup:
        Timed computes of each workload on each setting, after ``warmup`` computes that are
        kept in the tables, flagged, but left out of the summary and the plots of time and cost.
    platforms:
        ``"local"`` (a ``LocalCluster`` per setting) and/or ``"lambda"`` (a ``LambdaCluster``
        per setting, with ``lambda_options``: ``region``, ``endpoint_url``...).
    output:
        A folder to save the results into (:meth:`ExperimentResult.save`); also what ran
        before an error or Ctrl-C, before it is raised again.
    small:
        Build the catalogue's workloads at the sizes of the harness's ``--small``.
    check:
        Compare every result with Dask's ``sync`` result (computed once per workload,
        untimed); the ``check`` column says ``equal``, ``close`` or ``MISMATCH``.
    progress:
        Show ``runs 3/20, eta 0:41`` on standard error.
    local_options, lambda_options:
        Other keyword arguments of ``LocalCluster`` (whose ``prewarm`` is False here unless
        given: the warm-up runs take the cold starts) and of ``LambdaCluster``.
    """
    options = {}
    if local_options:
        options["local"] = dict(local_options)
    if lambda_options:
        options["lambda"] = dict(lambda_options)
    grid = make_grid(workloads, memory_mb, max_concurrency, runs, platforms, warmup, small, options)
    return run_experiment(grid, output=output, check=check, progress=progress, small=small)


def run_experiment(
    grid: Grid,
    output: str | Path | None = None,
    check: bool = True,
    progress: bool = True,
    small: bool = False,
) -> ExperimentResult:
    """Run a checked grid (see :func:`experiment`)."""
    collector = Collector()
    meter = Progress(grid.timed_runs, grid.computes, enabled=progress)
    # Built once, untimed: what each workload is, at the chosen sizes, goes with the results.
    built = {entry.name: entry.build() for entry in grid.workloads}
    description = describe_where(
        {
            **grid.describe(),
            "workloads": {name: entry.description for name, entry in built.items()},
            "small": small,
            "check": check,
        }
    )
    try:
        run_grid(grid, built, collector, meter, check)
    except BaseException:
        meter.close()
        if output is not None and collector.runs:
            _collect(collector, description).save(output)
        raise
    meter.close()
    result = _collect(collector, description)
    if output is not None:
        result.save(output)
    return result


def _collect(collector: Collector, description: dict[str, Any]) -> ExperimentResult:
    return ExperimentResult(
        runs_frame(collector.runs), invocations_frame(collector.invocations), description
    )


__all__ = [
    "MEMORY_SWEEP_MB",
    "ExperimentResult",
    "Grid",
    "experiment",
    "load_config",
    "make_grid",
    "run_experiment",
]
