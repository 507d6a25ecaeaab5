"""Benchmarks: our engine against Dask's own schedulers, on the workloads of the issue.

Run it as ``python -m dask_serverless.bench`` (or ``make bench``, or ``dask-serverless bench``);
``--small`` shrinks every workload to a quick check, ``--list`` names the workloads.

What it measures
----------------
* **Wall seconds of one compute**, per workload and scheduler: ``dask.compute(obj,
  scheduler=...)`` timed with ``time.perf_counter()``, so graph optimization, our ingest, plan
  and upload, the run and fetching the result all count. Each workload's Dask object is built
  once, untimed. Runs alternate (run 1 on every scheduler, then run 2, ...), so that a slow
  moment of the machine does not land on one scheduler only. Tables show the median and our
  ratio to every other scheduler (ours / theirs: below 1 means we are faster).
* **The schedulers**: ``serverless`` (``dask_serverless.LocalCluster()`` with its default
  arguments, started once before the workloads; ``start()`` and a first one-task compute, which
  waits for the prewarmed workers, are timed apart), Dask's ``sync``, ``threads`` and
  ``processes``, and ``distributed`` (``distributed.LocalCluster(n_workers=2,
  threads_per_worker=1)`` with a ``Client`` that is not made the default, its start-up timed
  apart too). Every compute names its scheduler: Dask's global default is never switched.
* **Correctness**: every result is compared with the ``sync`` result (computed once, untimed,
  when ``sync`` is not among the timed schedulers): ``equal``; ``close`` (``numpy.allclose``
  with ``rtol=1e-9, atol=0``; the largest relative difference is shown); or ``MISMATCH``, which
  is printed loudly and makes the exit status 1 (the other workloads still run). A compute that
  raises is reported the same way.
* **What a run costs our engine**, from ``cluster.last_run`` after each compute: invocations,
  store operations and store bytes (written + read) per task, and the bytes of values that
  crossed a function boundary. A number the engine does not report is shown as ``-``.
* **The engine alone** (``zero-work``): ``_core.zero_work`` plans a graph and runs the
  protocol without Python tasks, giving the engine's own microseconds per task, on the graph of
  ``trivial-100000`` and on a synthetic graph of about a million tasks (which also gives the
  planner's throughput); and the time from a Dask graph to a planned run (ingest and plan, as
  ``get`` does them) beside ``started_seconds`` of a real run.

At the end the targets of the issue are printed with the measured values and PASS or MISS.
Timings are reported, never asserted: only a wrong result or a failed compute fails the run.

Outputs: the console (machine, every run as it completes, a table per workload, the targets);
a CSV (``--csv``): one row per workload and scheduler, where ``serverless_ratio`` is our median
divided by the row's median and the statistics columns are filled on ``serverless`` rows; the
machine, the start-ups and the engine measurements are ``#`` comment lines at the top (read it
with ``pandas.read_csv(path, comment="#")``); and, with ``--markdown``, a report for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import importlib.util
import operator
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask import delayed

import dask_serverless
from dask_serverless import _core
from dask_serverless._ingest import ingest
from dask_serverless._scheduler import plan_graph
from dask_serverless.cluster import LocalCluster

REFERENCE = "sync"
OURS = "serverless"
# Also the order of the runs and of the rows: the reference first, so that every result can be
# checked as soon as it arrives.
SCHEDULER_NAMES = (REFERENCE, OURS, "threads", "processes", "distributed")
RELATIVE_TOLERANCE = 1e-9

# -- workloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A workload ready to compute: its Dask object and what it is, at the chosen sizes."""

    collection: Any
    description: str
    # Tasks of the graph, where tasks per second is the measure.
    tasks: int | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    # None for a measurement of the engine itself, which computes no Dask object.
    build: Callable[[bool], Built] | None
    requires: tuple[str, ...] = ()


def random_square(seed: int, side: int, chunk: int) -> da.Array:
    return da.random.RandomState(seed).random((side, side), chunks=(chunk, chunk))


def square_sizes(small: bool, reduced: int = 2_000) -> tuple[int, int, str, str]:
    """Side and chunk side of the square workloads, and both as text."""
    side, chunk = (reduced, reduced // 4) if small else (10_000, 1_000)
    return side, chunk, f"{side:,} x {side:,}", f"chunks {chunk:,} x {chunk:,}"


def build_demo(small: bool) -> Built:
    side, chunk, shape, chunks = square_sizes(small)
    return Built(random_square(42, side, chunk).mean(), f"mean of a {shape} random array, {chunks}")


def build_transpose_add(small: bool) -> Built:
    side, chunk, shape, chunks = square_sizes(small)
    x = random_square(42, side, chunk)
    return Built((x + x.T).mean(), f"mean of x + x.T, x a {shape} random array, {chunks}")


def build_gemm(small: bool) -> Built:
    side, chunk, shape, chunks = square_sizes(small, reduced=1_000)
    product = da.matmul(random_square(42, side, chunk), random_square(43, side, chunk))
    return Built(
        product.sum(),
        f"sum of the matrix product of two {shape} random arrays (seeds 42 and 43), {chunks}; "
        f"the sum keeps the {side * side * 8 / 1e6:,.0f} MB product out of the client, whose "
        f"fetch would dominate",
    )


def build_tree(full_count: int, small_count: int, small: bool) -> Built:
    count = small_count if small else full_count
    values = [delayed(number) for number in range(count)]
    while len(values) > 1:
        values = [
            delayed(operator.add)(left, right)
            for left, right in zip(values[::2], values[1::2], strict=True)
        ]
    return Built(values[0], f"pairwise tree of delayed(operator.add) over {count:,} numbers")


def build_tsqr_svd(small: bool) -> Built:
    rows, columns, chunk_rows = (20_000, 50, 2_000) if small else (200_000, 1_000, 10_000)
    x = da.random.RandomState(42).random((rows, columns), chunks=(chunk_rows, columns))
    _, singular_values, _ = da.linalg.svd(x)
    return Built(
        singular_values,
        f"da.linalg.svd (tall-and-skinny QR) of a {rows:,} x {columns:,} random array, chunks "
        f"{chunk_rows:,} x {columns:,}; returns the singular values only (u would bring "
        f"{rows * columns * 8 // 1_000_000:,} MB to the client)",
    )


def build_svd_compressed(small: bool) -> Built:
    side, chunk = (2_000, 500) if small else (10_000, 2_000)
    x = random_square(42, side, chunk)
    _, singular_values, _ = da.linalg.svd_compressed(x, k=5, seed=42)
    return Built(
        singular_values,
        f"da.linalg.svd_compressed(k=5, seed=42) of a {side:,} x {side:,} random array, chunks "
        f"{chunk:,} x {chunk:,}; returns the singular values",
    )


def build_svc_predict(small: bool) -> Built:
    from dask_ml.datasets import make_classification
    from dask_ml.wrappers import ParallelPostFit
    from sklearn.svm import SVC

    samples, chunks, training = (10_000 if small else 800_000), 20, 2_000
    features, labels = make_classification(
        n_samples=samples, n_features=20, chunks=samples // chunks, random_state=42
    )
    training_features, training_labels = dask.compute(
        features[:training], labels[:training], scheduler=REFERENCE
    )
    model = ParallelPostFit(SVC()).fit(training_features, training_labels)
    return Built(
        model.predict(features),
        f"sklearn SVC fitted on {training:,} samples, predicting {samples:,} samples of 20 "
        f"features in {chunks} chunks with dask_ml's ParallelPostFit (the tasks generate the "
        f"samples with dask_ml.datasets.make_classification)",
    )


def noop(value: Any) -> Any:
    """A task that does nothing."""
    return value


def build_trivial(small: bool) -> Built:
    count, group = (5_000, 100) if small else (100_000, 1_000)
    noops = [delayed(noop)(number) for number in range(count)]
    sums = [delayed(sum)(noops[start : start + group]) for start in range(0, count, group)]
    total = delayed(sum)(sums)
    tasks = len(total.__dask_graph__())
    return Built(
        total,
        f"{count:,} independent no-op tasks, summed in groups of {group:,}, then one sum: "
        f"{tasks:,} tasks, one number back to the client",
        tasks=tasks,
    )


TRIVIAL = "trivial-100000"
ZERO_WORK = "zero-work"
WORKLOADS = (
    Workload("demo", "mean of a 10,000 x 10,000 random array, chunks 1,000 x 1,000", build_demo),
    Workload("transpose-add", "(x + x.T).mean() on the demo's array", build_transpose_add),
    Workload(
        "tree-1024",
        "pairwise tree of delayed(operator.add) over 1,024 numbers",
        functools.partial(build_tree, 1_024, 1_024),
    ),
    Workload(
        "tree-65536",
        "the same tree over 65,536 numbers (4,096 with --small)",
        functools.partial(build_tree, 65_536, 4_096),
    ),
    Workload("gemm", "sum of da.matmul of two 10,000 x 10,000 arrays", build_gemm),
    Workload(
        "tsqr-svd", "singular values of a 200,000 x 1,000 array (da.linalg.svd)", build_tsqr_svd
    ),
    Workload(
        "svd-compressed",
        "singular values of da.linalg.svd_compressed(k=5) of a 10,000 x 10,000 array",
        build_svd_compressed,
    ),
    Workload(
        "svc-predict",
        "SVC prediction of 800,000 samples in 20 chunks with dask_ml's ParallelPostFit",
        build_svc_predict,
        requires=("sklearn", "dask_ml"),
    ),
    Workload(TRIVIAL, "100,000 no-op tasks and a small sum: per-task overhead", build_trivial),
    Workload(
        ZERO_WORK,
        "the engine alone (_core.zero_work) on the trivial graph and on a million tasks; "
        "planner throughput; ingest time",
        None,
    ),
)
WORKLOAD_NAMES = tuple(workload.name for workload in WORKLOADS)


def synthetic_dependencies(chains: int, length: int, seed: int = 42) -> tuple[list, list[int]]:
    """A graph as dependency lists: ``chains`` chains of ``length`` tasks, each task depending
    on the one before it and (one task in a hundred, seeded) on a task of the previous chain,
    then a pairwise tree that reduces the chains' last tasks to the one output."""
    generator = random.Random(seed)
    dependencies: list[list[int]] = []
    for chain in range(chains):
        start = chain * length
        for position in range(length):
            needed = [start + position - 1] if position else []
            if chain and generator.random() < 0.01:
                needed.append(start - length + generator.randrange(length))
            dependencies.append(needed)
    level = [start + length - 1 for start in range(0, chains * length, length)]
    while len(level) > 1:
        reduced = []
        for left, right in zip(level[::2], level[1::2], strict=False):
            reduced.append(len(dependencies))
            dependencies.append([left, right])
        level = reduced + level[len(reduced) * 2 :]
    return dependencies, level


# -- checking results --------------------------------------------------------------------------

STATUSES = ("equal", "close", "mismatch")


@dataclass(frozen=True)
class Check:
    """How a result compares with the reference."""

    status: str
    max_relative_difference: float | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "mismatch"

    def __str__(self) -> str:
        if self.status == "equal":
            return "equal"
        parts = []
        if self.max_relative_difference is not None:
            parts.append(f"max relative difference {self.max_relative_difference:.3g}")
        if self.detail:
            parts.append(self.detail)
        label = "close" if self.status == "close" else "MISMATCH"
        return f"{label} ({'; '.join(parts)})" if parts else label


def worst(checks: Sequence[Check]) -> Check | None:
    if not checks:
        return None
    chosen = max(checks, key=lambda check: STATUSES.index(check.status))
    differences = [
        check.max_relative_difference
        for check in checks
        if check.max_relative_difference is not None
    ]
    return Check(chosen.status, max(differences, default=None), chosen.detail)


def compare(expected: Any, actual: Any) -> Check:
    """Compare a result with the reference: tuples and lists part by part, everything else as
    arrays (exactly, then within ``RELATIVE_TOLERANCE``)."""
    if isinstance(expected, tuple | list):
        if not isinstance(actual, tuple | list) or len(actual) != len(expected):
            return Check(
                "mismatch", detail=f"{type(actual).__name__} instead of {len(expected)} parts"
            )
        parts = [compare(left, right) for left, right in zip(expected, actual, strict=True)]
        return worst(parts) or Check("equal")
    expected_array, actual_array = np.asarray(expected), np.asarray(actual)
    if expected_array.shape != actual_array.shape:
        return Check(
            "mismatch", detail=f"shape {actual_array.shape} instead of {expected_array.shape}"
        )
    numeric = all(
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        for array in (expected_array, actual_array)
    )
    if not numeric:
        equal = np.array_equal(expected_array, actual_array)
        return Check("equal") if equal else Check("mismatch", detail="values differ")
    if np.array_equal(expected_array, actual_array, equal_nan=True):
        return Check("equal")
    difference = max_relative_difference(expected_array, actual_array)
    if np.allclose(actual_array, expected_array, rtol=RELATIVE_TOLERANCE, atol=0, equal_nan=True):
        return Check("close", difference)
    return Check("mismatch", difference)


def max_relative_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest ``|actual - expected| / |expected|``; NaN in one array only counts as infinite."""
    dtype = np.result_type(expected, actual, np.float64)
    expected, actual = expected.astype(dtype), actual.astype(dtype)
    both_nan = np.isnan(expected) & np.isnan(actual)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(actual - expected) / np.abs(expected)
    relative = np.where((actual == expected) | both_nan, 0.0, relative)
    relative = np.where(np.isnan(relative), np.inf, relative)
    return float(relative.max()) if relative.size else 0.0


# -- measuring ---------------------------------------------------------------------------------

# What ``cluster.last_run`` reports after each compute.
LAST_RUN_KEYS = (
    "tasks",
    "batches",
    "invocations",
    "store_operations",
    "store_bytes_written",
    "store_bytes_read",
    "task_bytes",
    "value_bytes_written",
    "boundary_bytes",
    "ingest_seconds",
    "plan_seconds",
    "upload_seconds",
    "started_seconds",
    "run_seconds",
    "fetch_seconds",
    "total_seconds",
)


# Derived from them, per task.
PER_TASK_KEYS = ("invocations_per_task", "store_operations_per_task", "store_bytes_per_task")


@dataclass
class SchedulerResult:
    """Every run of one workload on one scheduler."""

    name: str
    seconds: list[float] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # ``cluster.last_run`` after each run (ours only).
    last_runs: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return median(self.seconds) if self.seconds else None

    @property
    def check(self) -> Check | None:
        return worst(self.checks)

    @property
    def failed(self) -> bool:
        """A compute raised, a result differs from the reference, or could not be checked."""
        unchecked = len(self.checks) < len(self.seconds)
        return self.error is not None or unchecked or any(check.failed for check in self.checks)

    def last_run_median(self, key: str) -> float | None:
        values = [run[key] for run in self.last_runs if run.get(key) is not None]
        return median(values) if values else None

    def engine_statistics(self) -> dict[str, float | None]:
        """Medians over the runs of ``last_run``, and the per-task figures."""
        values = {key: self.last_run_median(key) for key in LAST_RUN_KEYS}
        tasks = values["tasks"]

        def per_task(amount: float | None) -> float | None:
            return amount / tasks if amount is not None and tasks else None

        written, read = values["store_bytes_written"], values["store_bytes_read"]
        values["invocations_per_task"] = per_task(values["invocations"])
        values["store_operations_per_task"] = per_task(values["store_operations"])
        values["store_bytes_per_task"] = per_task(
            written + read if written is not None and read is not None else None
        )
        return values


@dataclass
class WorkloadResult:
    name: str
    built: Built
    schedulers: dict[str, SchedulerResult]

    def ratio(self, other: str) -> float | None:
        """Our median over ``other``'s median."""
        ours, theirs = self.schedulers.get(OURS), self.schedulers.get(other)
        if ours is None or theirs is None or ours.median is None or not theirs.median:
            return None
        return ours.median / theirs.median

    def tasks_per_second(self, scheduler: str) -> float | None:
        seconds = self.schedulers[scheduler].median
        return self.built.tasks / seconds if self.built.tasks and seconds else None

    @property
    def failed(self) -> bool:
        return any(result.failed for result in self.schedulers.values())


@dataclass
class Session:
    """The schedulers of a benchmark, started once."""

    # Name -> the ``scheduler=`` argument of ``dask.compute``, in the order of the runs.
    schedulers: dict[str, Any]
    cluster: LocalCluster | None
    start_seconds: dict[str, float]


@contextmanager
def open_schedulers(names: Sequence[str]) -> Iterator[Session]:
    """Start our LocalCluster and distributed's, if named; both are closed on the way out,
    also after an error or Ctrl-C."""
    with ExitStack() as stack:
        schedulers: dict[str, Any] = {}
        start_seconds: dict[str, float] = {}
        cluster = None
        for name in names:
            started = time.perf_counter()
            if name == OURS:
                cluster = LocalCluster()
                stack.callback(cluster.close)
                cluster.start()
                start_seconds[f"{OURS} start()"] = time.perf_counter() - started
                # start() returns before the prewarmed workers have imported anything; a first
                # compute, of one task, shows when the cluster is ready.
                compute(delayed(noop)(0), cluster.get)
                start_seconds[f"{OURS} ready (one-task compute done)"] = (
                    time.perf_counter() - started
                )
                schedulers[name] = cluster.get
            elif name == "distributed":
                import distributed

                distributed_cluster = distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, dashboard_address=None
                )
                stack.callback(distributed_cluster.close)
                client = distributed.Client(distributed_cluster, set_as_default=False)
                stack.callback(client.close)
                schedulers[name] = client
                start_seconds[f"{name} start (workers running)"] = time.perf_counter() - started
            else:
                schedulers[name] = name
        for name, seconds in start_seconds.items():
            print(f"{name}: {seconds:.2f} s")
        yield Session(schedulers, cluster, start_seconds)


def compute(collection: Any, scheduler: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    (value,) = dask.compute(collection, scheduler=scheduler)
    return value, time.perf_counter() - started


def measure_workload(
    workload: Workload,
    built: Built,
    session: Session,
    runs: int,
    skipped: Collection[tuple[str, str]] = frozenset(),
) -> WorkloadResult:
    schedulers = {
        name: scheduler
        for name, scheduler in session.schedulers.items()
        if (name, workload.name) not in skipped
    }
    for name in session.schedulers.keys() - schedulers.keys():
        print(f"  {name}: skipped (--skip)")
    results = {name: SchedulerResult(name) for name in schedulers}
    reference = None
    if REFERENCE not in schedulers:
        try:
            reference, seconds = compute(built.collection, REFERENCE)
            print(f"  reference ({REFERENCE}, not timed): {seconds:.3f} s")
        except Exception as error:  # noqa: BLE001 - reported; every result stays unchecked
            print(f"  reference ({REFERENCE}) !!! FAILED: {type(error).__name__}: {error}")
    # One untimed run of each scheduler first: workers importing Dask, caches filling and
    # pools starting are not what the timed runs measure.
    for name, scheduler in schedulers.items():
        try:
            _, seconds = compute(built.collection, scheduler)
            print(f"  warm-up    {name:<11} {seconds:9.3f} s (not timed)")
        except Exception as error:  # noqa: BLE001 - reported; the timed runs say it again
            results[name].error = f"{type(error).__name__}: {error}"
            print(f"  warm-up    {name:<11} !!! FAILED: {results[name].error}")
    for run in range(1, runs + 1):
        for name, scheduler in schedulers.items():
            result = results[name]
            if result.error is not None:
                continue
            try:
                value, seconds = compute(built.collection, scheduler)
            except Exception as error:  # noqa: BLE001 - reported; the other schedulers go on
                result.error = f"{type(error).__name__}: {error}"
                print(f"  run {run}/{runs}  {name:<11} !!! FAILED: {result.error}")
                continue
            if reference is None and name == REFERENCE:
                reference = value
            check = compare(reference, value) if reference is not None else None
            result.seconds.append(seconds)
            if check is not None:
                result.checks.append(check)
            if name == OURS:
                result.last_runs.append(dict(getattr(session.cluster, "last_run", None) or {}))
            rate = f"  {built.tasks / seconds:12,.0f} tasks/s" if built.tasks else ""
            shown = str(check) if check is not None else "not checked: no reference"
            loud = "  !!! " if check is not None and check.failed else "  "
            print(f"  run {run}/{runs}  {name:<11} {seconds:9.3f} s{rate}{loud}{shown}")
    return WorkloadResult(workload.name, built, results)


@dataclass
class EngineResult:
    """The engine measured without Python tasks, and the way from a graph to a run."""

    # Graph label -> what ``_core.zero_work`` returned; empty when it is unavailable.
    zero_work: dict[str, dict] = field(default_factory=dict)
    planner_graph: str | None = None
    ingest_tasks: int | None = None
    # ``ingest`` and ``_core.Plan`` of the trivial graph, as ``get`` does them.
    ingest_plan_seconds: float | None = None
    # ``last_run["started_seconds"]`` of our runs of the trivial workload.
    started_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def planner_tasks_per_second(self) -> float | None:
        measured = self.zero_work.get(self.planner_graph or "")
        if not measured or not measured.get("plan_seconds"):
            return None
        return measured["tasks"] / measured["plan_seconds"]


def measure_engine(
    small: bool, session: Session, trivial: Built, trivial_result: WorkloadResult | None
) -> EngineResult:
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


def describe_zero_work(measured: dict) -> str:
    return (
        f"{format_number(measured.get('tasks'), ',')} tasks in "
        f"{format_number(measured.get('batches'), ',')} batches, plan "
        f"{format_number(measured.get('plan_seconds'), '.3f')} s, protocol "
        f"{format_number(measured.get('protocol_seconds'), '.3f')} s, "
        f"{format_number(measured.get('microseconds_per_task'), '.2f')} µs per task"
    )


# -- targets -----------------------------------------------------------------------------------

RATIO_TARGETS = {"threads": 1.2, "processes": 0.5}
RATIO_TARGET_WORKLOADS = ("demo", "transpose-add", "gemm", "tsqr-svd", "svd-compressed")
SYMBOLS: dict[Any, str] = {operator.le: "<=", operator.ge: ">=", operator.lt: "<"}


@dataclass(frozen=True)
class Target:
    subject: str
    measured: str
    requirement: str
    passed: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else "PASS" if self.passed else "MISS"

    def __str__(self) -> str:
        return f"{self.subject}: {self.measured} (target {self.requirement}): {self.verdict}"


def target(
    subject: str,
    value: float | None,
    comparison: Callable[[float, float], bool],
    limit: float | None,
    measured: str,
    requirement: str,
) -> Target:
    """``measured`` formats ``value``, e.g. ``"{:.2f}x threads"``; ``requirement`` says what
    ``limit`` is, after the comparison's symbol."""
    requirement = f"{SYMBOLS[comparison]} {requirement}"
    if value is None or limit is None:
        return Target(subject, "-", requirement, None)
    return Target(subject, measured.format(value), requirement, comparison(value, limit))


def evaluate_targets(
    results: Sequence[WorkloadResult], engine: EngineResult | None
) -> list[Target]:
    targets = []
    for result in results:
        for other, limit in RATIO_TARGETS.items():
            if result.name in RATIO_TARGET_WORKLOADS and other in result.schedulers:
                ratio = result.ratio(other)
                measured = f"{{:.2f}}x {other}"
                targets.append(
                    target(result.name, ratio, operator.le, limit, measured, f"{limit}x")
                )
        if result.name == TRIVIAL and OURS in result.schedulers:
            subject = f"{TRIVIAL} ({result.built.tasks:,} tasks)"
            rate = result.tasks_per_second(OURS)
            targets.append(
                target(subject, rate, operator.ge, 20_000, "{:,.0f} tasks/s", "20,000 tasks/s")
            )
    if engine is not None:
        labels: list[str | None] = list(engine.zero_work) or [None]
        for label in labels:
            subject = ZERO_WORK if label is None else f"{ZERO_WORK}, {label}"
            figures = engine.zero_work.get(label, {}) if label is not None else {}
            microseconds = figures.get("microseconds_per_task")
            measured = "{:.2f} µs per task"
            targets.append(target(subject, microseconds, operator.le, 10, measured, "10 µs"))
        rate = engine.planner_tasks_per_second()
        targets.append(
            target("planner", rate, operator.ge, 1e6, "{:,.0f} tasks/s", "1,000,000 tasks/s")
        )
        seconds, how = engine.started_seconds, "entering get() to a started run"
        if seconds is None:
            seconds, how = engine.ingest_plan_seconds, "ingest + plan only"
        subject = f"{format_number(engine.ingest_tasks, ',')} tasks from a graph to a run ({how})"
        targets.append(target(subject, seconds, operator.lt, 1, "{:.3f} s", "1 s"))
    for result in results:
        if OURS not in result.schedulers:
            continue
        statistics = result.schedulers[OURS].engine_statistics()
        subject = f"{result.name}: invocations per task"
        per_task = statistics["invocations_per_task"]
        targets.append(target(subject, per_task, operator.lt, 1, "{:.3f}", "1"))
        subject = f"{result.name}: value bytes written"
        written, boundary = statistics["value_bytes_written"], statistics["boundary_bytes"]
        requirement = f"boundary bytes ({format_number(boundary, ',.0f')} B)"
        targets.append(target(subject, written, operator.le, boundary, "{:,.0f} B", requirement))
    return targets


# -- reporting ---------------------------------------------------------------------------------


def format_number(value: float | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def describe_machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError):
        memory = "unknown"
    versions = {"Python": platform.python_version(), "dask": dask.__version__}
    for module in ("distributed", "numpy", "sklearn", "dask_ml"):
        if importlib.util.find_spec(module) is not None:
            versions[module] = importlib.import_module(module).__version__
    versions["dask-serverless"] = dask_serverless.__version__
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "system": platform.platform(),
        **versions,
    }


def table(result: WorkloadResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a workload's table, for the console and for Markdown."""
    header = ["scheduler", "runs", "median s", "min s", "max s"]
    if result.built.tasks:
        header.append("tasks/s")
    header.append("check")
    rows = []
    for name, scheduler in result.schedulers.items():
        row = [name, str(len(scheduler.seconds)), format_number(scheduler.median, ".3f")]
        row += [format_number(min(scheduler.seconds, default=None), ".3f")]
        row += [format_number(max(scheduler.seconds, default=None), ".3f")]
        if result.built.tasks:
            row.append(format_number(result.tasks_per_second(name), ",.0f"))
        check = f"FAILED: {scheduler.error}" if scheduler.error else str(scheduler.check or "-")
        row.append(check)
        rows.append(row)
    return header, rows


def notes(result: WorkloadResult) -> list[str]:
    """The lines under a workload's table: our ratios and what our runs cost."""
    ours = result.schedulers.get(OURS)
    if ours is None:
        return []
    ratios = [
        f"{format_number(result.ratio(other), '.2f')}x {other}"
        for other in result.schedulers
        if other != OURS
    ]
    lines = (
        [f"{OURS} / other: {', '.join(ratios)} (below 1: {OURS} is faster than the other)"]
        if ratios
        else []
    )
    statistics = ours.engine_statistics()
    lines.append(
        f"{OURS}: {format_number(statistics['tasks'], ',.0f')} tasks in "
        f"{format_number(statistics['batches'], ',.0f')} batches; per task "
        f"{format_number(statistics['invocations_per_task'], '.3f')} invocations, "
        f"{format_number(statistics['store_operations_per_task'], '.2f')} store operations, "
        f"{format_bytes(statistics['store_bytes_per_task'])} store bytes (written + read); "
        f"{format_bytes(statistics['boundary_bytes'])} crossed function boundaries; run started "
        f"{format_number(statistics['started_seconds'], '.3f')} s after entering get() (ingest "
        f"{format_number(statistics['ingest_seconds'], '.3f')} s, plan "
        f"{format_number(statistics['plan_seconds'], '.3f')} s, upload "
        f"{format_number(statistics['upload_seconds'], '.3f')} s)"
    )
    return lines


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns: the first and the last to the left, numbers to the right."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if column in (0, len(row) - 1) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def print_workload(result: WorkloadResult) -> None:
    print()
    for line in text_table(*table(result)):
        print(f"  {line}")
    for line in notes(result):
        print(f"  {line}")


CSV_COLUMNS = (
    "workload",
    "scheduler",
    "runs",
    "median_seconds",
    "min_seconds",
    "max_seconds",
    "tasks_per_second",
    "serverless_ratio",
    "check",
    "max_relative_difference",
    "error",
    *LAST_RUN_KEYS,
    *PER_TASK_KEYS,
)


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_csv(path: Path, results: Sequence[WorkloadResult], header_lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        for line in header_lines:
            file.write(f"# {line}\n")
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            for name, scheduler in result.schedulers.items():
                check = scheduler.check
                statistics = scheduler.engine_statistics() if name == OURS else {}
                row = {
                    "workload": result.name,
                    "scheduler": name,
                    "runs": len(scheduler.seconds),
                    "median_seconds": scheduler.median,
                    "min_seconds": min(scheduler.seconds, default=None),
                    "max_seconds": max(scheduler.seconds, default=None),
                    "tasks_per_second": result.tasks_per_second(name),
                    "serverless_ratio": result.ratio(name),
                    "check": check.status if check else None,
                    "max_relative_difference": check.max_relative_difference if check else None,
                    "error": scheduler.error,
                    **statistics,
                }
                writer.writerow([csv_value(row.get(column)) for column in CSV_COLUMNS])


def header_lines(
    machine: dict[str, str], command: str, date: str, measured: Measurements
) -> list[str]:
    """The context of the numbers: CSV comment lines, and the top of the Markdown report."""
    lines = [f"dask-serverless benchmark, {date}: {command}"]
    lines += [f"{name}: {value}" for name, value in machine.items()]
    lines += [f"{name}: {seconds:.2f} s" for name, seconds in measured.start_seconds.items()]
    engine = measured.engine
    if engine is not None:
        lines.append(
            f"ingest + plan of {format_number(engine.ingest_tasks, ',')} tasks: "
            f"{format_number(engine.ingest_plan_seconds, '.3f')} s; started_seconds of a real "
            f"run: {format_number(engine.started_seconds, '.3f')} s"
        )
        lines += [
            f"zero-work, {label}: {describe_zero_work(values)}"
            for label, values in engine.zero_work.items()
        ]
        lines.append(f"planner: {format_number(engine.planner_tasks_per_second(), ',.0f')} tasks/s")
        lines += engine.notes
    return lines


def summary_table(results: Sequence[WorkloadResult]) -> tuple[list[str], list[list[str]]]:
    """One row per workload: the wide table of docs/benchmarks.md."""
    header = ["workload", "runs"]
    header += [f"{name} s" for name in SCHEDULER_NAMES]
    header += [f"ours / {name}" for name in ("threads", "processes")]
    header += ["invocations / task", "store ops / task", "value bytes written / crossed"]
    rows = []
    for result in results:
        ours = result.schedulers.get(OURS)
        runs = max((len(timed.seconds) for timed in result.schedulers.values()), default=0)
        row = [result.name, str(runs)]
        for name in SCHEDULER_NAMES:
            scheduler = result.schedulers.get(name)
            row.append(format_number(scheduler.median if scheduler else None, ".2f"))
        for name in ("threads", "processes"):
            ratio = result.ratio(name)
            row.append("–" if ratio is None else f"{ratio:.2f}×")
        if ours is not None:
            statistics = ours.engine_statistics()
            written = statistics.get("value_bytes_written")
            crossed = statistics.get("boundary_bytes")
            row += [
                format_number(statistics["invocations_per_task"], ".3f"),
                format_number(statistics["store_operations_per_task"], ".2f"),
                f"{format_number(written and written / 1e6, ',.3f')} MB / "
                f"{format_number(crossed and crossed / 1e6, ',.3f')} MB",
            ]
        else:
            row += ["–", "–", "–"]
        rows.append(row)
    return header, rows


def write_markdown(
    path: Path,
    context: Sequence[str],
    results: Sequence[WorkloadResult],
    targets: Sequence[Target],
    small: bool,
) -> None:
    lines = ["# Benchmarks", ""]
    lines += [f"- {line}" for line in context]
    if small:
        lines += ["", "Sizes: `--small` (quick check; not the sizes of the targets)."]
    lines += ["", "## Summary", ""]
    lines += [
        "Median wall seconds of one `dask.compute` per scheduler; ratios are ours over theirs "
        "(below 1: ours is faster).",
        "",
    ]
    lines += markdown_table(*summary_table(results))
    for result in results:
        lines += ["", f"## {result.name}", "", result.built.description + ".", ""]
        lines += markdown_table(*table(result))
        lines += [""] + [f"- {line}" for line in notes(result)]
    lines += ["", "## Targets", ""]
    lines += markdown_table(
        ["target", "measured", "required", "result"],
        [[item.subject, item.measured, item.requirement, item.verdict] for item in targets],
    )
    path.write_text("\n".join(lines) + "\n")


# -- command line ------------------------------------------------------------------------------


def names_list(known: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(known)}"
            )
        return names

    return parse


def skip_pairs(text: str) -> set[tuple[str, str]]:
    pairs = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        scheduler, _, workload = item.partition(":")
        if scheduler not in SCHEDULER_NAMES or workload not in WORKLOAD_NAMES:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not scheduler:workload with a scheduler of "
                f"{', '.join(SCHEDULER_NAMES)} and a workload of {', '.join(WORKLOAD_NAMES)}"
            )
        pairs.add((scheduler, workload))
    return pairs


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dask_serverless.bench",
        description="Benchmark dask-serverless's LocalCluster against Dask's schedulers.",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per scheduler (default 3)")
    parser.add_argument("--small", action="store_true", help="small sizes, for a quick check")
    parser.add_argument(
        "--workloads",
        type=names_list(WORKLOAD_NAMES),
        default=list(WORKLOAD_NAMES),
        help="comma-separated workloads (default: all; --list names them)",
    )
    parser.add_argument(
        "--schedulers",
        type=names_list(SCHEDULER_NAMES),
        default=list(SCHEDULER_NAMES),
        help=f"comma-separated schedulers to time (default: {','.join(SCHEDULER_NAMES)}); "
        f"{REFERENCE} always computes the reference",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path("bench-results") / "bench-results.csv",
        help="results file (default %(default)s; bench-results/ is ignored by git)",
    )
    parser.add_argument(
        "--skip",
        type=skip_pairs,
        default=set(),
        help="comma-separated scheduler:workload pairs not to time, e.g. "
        "distributed:tree-65536 (the reference still computes)",
    )
    parser.add_argument("--markdown", type=Path, help="also write a Markdown report here")
    parser.add_argument("--list", action="store_true", help="list the workloads and stop")
    options = parser.parse_args(argv)
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    return options


@dataclass
class Measurements:
    """Everything measured so far: kept when the benchmark is interrupted."""

    results: list[WorkloadResult] = field(default_factory=list)
    engine: EngineResult | None = None
    start_seconds: dict[str, float] = field(default_factory=dict)


def run_workloads(
    workloads: Sequence[Workload], session: Session, options: argparse.Namespace
) -> Iterator[WorkloadResult | EngineResult]:
    """Build and measure each workload in turn, yielding each result as it completes."""
    built_by_name: dict[str, Built] = {}
    results_by_name: dict[str, WorkloadResult] = {}
    for workload in workloads:
        print(f"\n== {workload.name} ==")
        missing = [name for name in workload.requires if importlib.util.find_spec(name) is None]
        if missing:
            print(f"  skipped: {', '.join(missing)} not installed")
            continue
        if workload.build is None:
            trivial = built_by_name.get(TRIVIAL) or build_trivial(options.small)
            yield measure_engine(options.small, session, trivial, results_by_name.get(TRIVIAL))
            continue
        started = time.perf_counter()
        built = built_by_name[workload.name] = workload.build(options.small)
        print(f"  {built.description}")
        print(f"  built in {time.perf_counter() - started:.2f} s (not timed)")
        result = results_by_name[workload.name] = measure_workload(
            workload, built, session, options.runs, options.skip
        )
        print_workload(result)
        yield result


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    if options.list:
        width = max(len(name) for name in WORKLOAD_NAMES)
        for workload in WORKLOADS:
            print(f"{workload.name:<{width}}  {workload.summary}")
        return 0
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)  # each run shows as it completes
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m dask_serverless.bench", *arguments])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = describe_machine()
    for name, value in machine.items():
        print(f"{name}: {value}")
    if options.small:
        print("sizes: --small")
    workloads = [workload for workload in WORKLOADS if workload.name in options.workloads]
    scheduler_names = [name for name in SCHEDULER_NAMES if name in options.schedulers]
    measured = Measurements()
    status = 0
    try:
        with open_schedulers(scheduler_names) as session:
            measured.start_seconds = session.start_seconds
            for result in run_workloads(workloads, session, options):
                if isinstance(result, EngineResult):
                    measured.engine = result
                else:
                    measured.results.append(result)
    except KeyboardInterrupt:
        print("\ninterrupted: the clusters are closed; writing what was measured so far")
        status = 130

    targets = evaluate_targets(measured.results, measured.engine)
    sizes = " (at --small sizes: indicative only)" if options.small else ""
    print(f"\n== targets{sizes} ==")
    for item in targets:
        print(f"  {item}")
    context = header_lines(machine, command, date, measured)
    write_csv(options.csv, measured.results, context)
    print(f"\nresults: {options.csv.resolve()}")
    if options.markdown:
        write_markdown(options.markdown, context, measured.results, targets, options.small)
        print(f"report: {options.markdown.resolve()}")
    failed = [result.name for result in measured.results if result.failed]
    if failed:
        print(f"\n!!! FAILED: wrong results or failed computes in {', '.join(failed)}")
        status = status or 1
    return status


if __name__ == "__main__":
    # Run the importable module rather than ``__main__``, so that tasks refer to
    # ``dask_serverless.bench.noop`` by name in every worker process.
    from dask_serverless.bench import main as bench_main

    sys.exit(bench_main())
