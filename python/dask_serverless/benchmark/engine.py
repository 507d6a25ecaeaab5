"""The engine alone (the ``zero-work`` entry of the catalogue), and the way from a graph to a run.

* **Zero-work runs**: the native ``zero_work`` plans a graph given as dependency lists and runs
  the protocol with tasks that do nothing, in one process, giving the engine's own microseconds
  per task, on the graph of ``trivial-100000`` and on
  :func:`~dask_serverless.benchmark.workloads.synthetic_dependencies` (about a million tasks at
  full size), which also gives the planner's throughput.
* **Ingest and plan** of the trivial graph, timed as ``get`` does them, beside
  ``started_seconds`` of our real runs of it (from ``cluster.last_run``).

This is the one module of the package that reaches into dask-serverless's private modules
(``_core.zero_work``, ``_ingest.ingest``, ``_scheduler.plan_graph``): what it measures has no
public interface today. Everything else in :mod:`dask_serverless.benchmark` uses public APIs
only; nothing else imports this module but the command line (the results' type,
:class:`~dask_serverless.benchmark.measuring.EngineResult`, lives with the other results).
"""

from __future__ import annotations

import time

from dask_serverless import _core
from dask_serverless._ingest import ingest
from dask_serverless._scheduler import plan_graph
from dask_serverless.benchmark.formatting import describe_zero_work, format_number
from dask_serverless.benchmark.measuring import OURS, EngineResult, Session, WorkloadResult
from dask_serverless.benchmark.workloads import TRIVIAL, Built, synthetic_dependencies
from dask_serverless.cluster import LocalCluster


def measure_engine(
    small: bool, session: Session, trivial: Built, trivial_result: WorkloadResult | None
) -> EngineResult:
    """Printed as measured. ``trivial``: the built trivial workload; ``trivial_result``: its
    measured runs, if it ran (for ``started_seconds``)."""
    cluster = session.cluster or LocalCluster()  # the defaults, when ours is not running
    parallelism, batches_per_function = cluster.parallelism, cluster.batches_per_function
    engine = EngineResult()
    collection = trivial.collection
    started = time.perf_counter()
    graph = ingest(collection.__dask_graph__(), collection.__dask_keys__())
    plan_graph(graph, parallelism, batches_per_function)
    engine.ingest_plan_seconds = time.perf_counter() - started
    engine.ingest_tasks = len(graph.keys)
    print(
        f"  ingest + plan of the {TRIVIAL} graph ({engine.ingest_tasks:,} tasks): "
        f"{engine.ingest_plan_seconds:.3f} s"
    )
    if trivial_result is not None and OURS in trivial_result.schedulers:
        engine.started_seconds = trivial_result.schedulers[OURS].last_run_median("started_seconds")
    print(
        f"  started_seconds of our {TRIVIAL} runs: {format_number(engine.started_seconds, '.3f')}"
    )

    zero_work = getattr(_core, "zero_work", None)
    if zero_work is None:
        note = "_core.zero_work is unavailable in this build: no zero-work measurement"
        engine.notes.append(note)
        print(f"  {note}")
        return engine
    chains, length = (100, 500) if small else (1_000, 1_000)
    dependencies, outputs = synthetic_dependencies(chains, length)
    synthetic = f"synthetic: {chains:,} chains of {length:,} tasks, cross-linked, and a tree"
    engine.planner_graph = synthetic
    graphs = {
        f"{TRIVIAL} graph": (graph.dependencies, graph.outputs),
        synthetic: (dependencies, outputs),
    }
    for label, (graph_dependencies, graph_outputs) in graphs.items():
        measured = dict(
            zero_work(graph_dependencies, graph_outputs, parallelism, batches_per_function)
        )
        engine.zero_work[label] = measured
        print(f"  zero-work, {label}: {describe_zero_work(measured)}")
    print(f"  planner: {format_number(engine.planner_tasks_per_second(), ',.0f')} tasks/s")
    return engine
