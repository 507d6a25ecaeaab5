"""Measuring: one compute timed, a workload's runs on every scheduler, the schedulers' session.

* :func:`measure_run` is the unit: one ``dask.compute(obj, scheduler=...)`` timed with
  ``time.perf_counter()`` (graph optimization, our ingest, plan and upload, the run and fetching
  the result all count), checked against a reference result when one is given, with
  ``cluster.last_run`` when the scheduler is a serverless cluster. It prints nothing and does not
  raise when the compute does: a :class:`RunResult` says what happened, and
  :meth:`RunResult.as_row` flattens it to one row of a table (``pandas.DataFrame(rows)``);
  :attr:`RunResult.report` keeps the run report itself (its invocations and cost). Code that
  measures other settings (memory sizes, concurrency limits) builds its own cluster and calls
  it with ``cluster.get``, as :mod:`dask_serverless.experiments` does.
* :func:`measure_workload` is the harness's loop over one built workload: the reference (Dask's
  ``sync``, computed once untimed when ``sync`` is not timed), one untimed warm-up run of each
  scheduler, then the timed runs alternating between the schedulers (run 1 on every scheduler,
  then run 2, ...), so that a slow moment of the machine does not land on one scheduler only.
  It prints each run as it completes and collects a :class:`WorkloadResult`.
* :func:`open_schedulers` starts the schedulers once for all workloads: ``serverless`` is
  ``dask_serverless.LocalCluster()`` with its default arguments (``start()`` and a first
  one-task compute, which waits for the prewarmed workers, are timed apart); Dask's ``sync``,
  ``threads`` and ``processes`` are named; ``distributed`` is ``distributed.LocalCluster(
  n_workers=2, threads_per_worker=1)`` with a ``Client`` that is not made the default (its
  start-up timed apart too). Every compute names its scheduler: Dask's global default is never
  switched.

The results: :class:`SchedulerResult` (every run of a workload on one scheduler: seconds,
checks, ``last_run`` reports, medians), :class:`WorkloadResult` (a workload on every scheduler:
our ratios), :class:`EngineResult` (what :mod:`dask_serverless.benchmark.engine` measures) and
:class:`Measurements` (all of them, kept when the benchmark is interrupted).

What a run costs our engine comes from ``cluster.last_run`` only (:data:`LAST_RUN_KEYS`, and the
per-task figures derived from them); a number the engine does not report stays ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Protocol

import dask
from dask import delayed

from dask_serverless.benchmark.checking import Check, compare, worst
from dask_serverless.benchmark.workloads import Built, Workload, noop
from dask_serverless.cluster import LocalCluster
from dask_serverless.report import RunReport

REFERENCE = "sync"
OURS = "serverless"
# Also the order of the runs and of the rows: the reference first, so that every result can be
# checked as soon as it arrives.
SCHEDULER_NAMES = (REFERENCE, OURS, "threads", "processes", "distributed")

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


def per_task_statistics(values: Mapping[str, Any]) -> dict[str, float | None]:
    """:data:`PER_TASK_KEYS` from values of :data:`LAST_RUN_KEYS` (one run's, or medians)."""
    tasks = values.get("tasks")

    def per_task(amount: float | None) -> float | None:
        return amount / tasks if amount is not None and tasks else None

    written, read = values.get("store_bytes_written"), values.get("store_bytes_read")
    return {
        "invocations_per_task": per_task(values.get("invocations")),
        "store_operations_per_task": per_task(values.get("store_operations")),
        "store_bytes_per_task": per_task(
            written + read if written is not None and read is not None else None
        ),
    }


class ReportsRuns(Protocol):
    """A cluster of dask-serverless (``LocalCluster``, ``LambdaCluster``): it leaves the cost of
    each compute on ``last_run`` (its run report, a mapping of figures)."""

    @property
    def last_run(self) -> Mapping[str, Any] | None: ...


@dataclass
class RunResult:
    """One timed compute of a Dask object on one scheduler."""

    # None when the compute raised.
    seconds: float | None
    # None when no reference was given, or the compute raised.
    check: Check | None = None
    # ``cluster.last_run`` after the compute; None when no cluster was given, empty when the
    # cluster reported nothing for this compute.
    last_run: dict | None = None
    # ``TypeName: message`` of the exception the compute raised.
    error: str | None = None
    # The result itself (not in :meth:`as_row`): a reference for the next runs.
    value: Any = field(default=None, repr=False)
    # The cluster's run report itself (not in :meth:`as_row`, which has its summary): its
    # ``.invocations``, ``.tasks`` and ``.cost``. None when ``last_run`` is None or empty.
    report: RunReport | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        """The compute raised, or its result differs from the reference."""
        return self.error is not None or (self.check is not None and self.check.failed)

    def as_row(self) -> dict[str, Any]:
        """The run as one flat row: ``seconds``, ``check`` (status), ``max_relative_difference``,
        ``error``, every key of :data:`LAST_RUN_KEYS` (None when not reported), the per-task
        figures, and whatever else ``last_run`` holds."""
        last_run = self.last_run or {}
        return {
            "seconds": self.seconds,
            "check": self.check.status if self.check else None,
            "max_relative_difference": self.check.max_relative_difference if self.check else None,
            "error": self.error,
            **dict.fromkeys(LAST_RUN_KEYS),
            **last_run,
            **per_task_statistics(last_run),
        }


def compute(collection: Any, scheduler: Any) -> tuple[Any, float]:
    """``dask.compute`` of one object on ``scheduler``, and its wall seconds; raises what the
    compute raises."""
    started = time.perf_counter()
    (value,) = dask.compute(collection, scheduler=scheduler)
    return value, time.perf_counter() - started


def measure_run(
    collection: Any,
    scheduler: Any,
    *,
    reference: Any = None,
    cluster: ReportsRuns | None = None,
) -> RunResult:
    """Time one compute of ``collection`` (a :class:`Built`'s ``collection``) on ``scheduler``
    (what ``dask.compute`` takes as ``scheduler=``: a name, ``cluster.get``, a ``Client``).

    ``reference``: the expected result (None: not checked). ``cluster``: the dask-serverless
    cluster behind ``scheduler``, whose ``last_run`` the result keeps. An exception of the
    compute is kept in ``error``; ``KeyboardInterrupt`` goes through. The first compute on a
    fresh cluster also pays for workers importing Dask: :func:`measure_workload` discards one
    warm-up run of each scheduler, and so should other callers."""
    before = cluster.last_run if cluster is not None else None
    try:
        value, seconds = compute(collection, scheduler)
    except Exception as error:  # noqa: BLE001 - the caller reports it
        return RunResult(None, error=f"{type(error).__name__}: {error}")
    check = compare(reference, value) if reference is not None else None
    last_run, report = None, None
    if cluster is not None:
        # A compute that did not reach the cluster leaves the previous run's report there.
        latest = cluster.last_run if cluster.last_run is not before else None
        last_run = dict(latest or {})
        report = latest if isinstance(latest, RunReport) else None
    return RunResult(seconds, check, last_run, value=value, report=report)


@dataclass
class SchedulerResult:
    """Every run of one workload on one scheduler."""

    name: str
    seconds: list[float] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # ``cluster.last_run`` after each run (ours only).
    last_runs: list[dict] = field(default_factory=list)
    error: str | None = None

    def add(self, run: RunResult) -> None:
        """Keep a run that succeeded."""
        assert run.seconds is not None, "a failed run sets error instead"
        self.seconds.append(run.seconds)
        if run.check is not None:
            self.checks.append(run.check)
        if run.last_run is not None:
            self.last_runs.append(run.last_run)

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
        values.update(per_task_statistics(values))
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
    # What each start-up took, by a label that says what was timed.
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
        yield Session(schedulers, cluster, start_seconds)


def measure_workload(
    workload: Workload,
    built: Built,
    session: Session,
    runs: int,
    skipped: Collection[tuple[str, str]] = frozenset(),
) -> WorkloadResult:
    """The reference, a warm-up run of each scheduler, then ``runs`` timed runs of each,
    alternating; printed as they complete. ``skipped``: (scheduler, workload) pairs not run."""
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
    for number in range(1, runs + 1):
        for name, scheduler in schedulers.items():
            result = results[name]
            if result.error is not None:
                continue
            cluster = session.cluster if name == OURS else None
            run = measure_run(built.collection, scheduler, reference=reference, cluster=cluster)
            if run.seconds is None:
                result.error = run.error
                print(f"  run {number}/{runs}  {name:<11} !!! FAILED: {result.error}")
                continue
            if reference is None and name == REFERENCE:
                reference = run.value
                run.check = compare(reference, run.value)
            result.add(run)
            seconds, check = run.seconds, run.check
            rate = f"  {built.tasks / seconds:12,.0f} tasks/s" if built.tasks else ""
            shown = str(check) if check is not None else "not checked: no reference"
            loud = "  !!! " if check is not None and check.failed else "  "
            print(f"  run {number}/{runs}  {name:<11} {seconds:9.3f} s{rate}{loud}{shown}")
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


@dataclass
class Measurements:
    """Everything measured so far: kept when the benchmark is interrupted."""

    results: list[WorkloadResult] = field(default_factory=list)
    engine: EngineResult | None = None
    start_seconds: dict[str, float] = field(default_factory=dict)
