"""The Dask scheduler ``get``: one compute from Dask's graph to results.

1. ingest the graph (:mod:`dask_serverless._ingest`), plan it natively (clusters of tasks);
2. pickle each batch's tasks at once and store them beside the batch's spec, the leaves
   first: each leaf is invoked as soon as it is uploaded, and runs while the client uploads
   the rest;
3. then only listen: functions run batches, release and invoke children themselves, and
   report on the result channel (progress while a batch runs, then its end);
4. feed Dask's callbacks as tasks finish (``ProgressBar`` works), re-emit the warnings tasks
   raised under the caller's own filters, read the outputs, delete every object of the run —
   whether it succeeded, failed or was interrupted (see :mod:`dask_serverless._base`).

A run's failure arrives as the exception the caller sees, raised by the native module: the
task's own exception (with the function's traceback as a note), or one of
:mod:`dask_serverless.errors`. Outputs that are literals are returned as the caller's own
objects, without a run.

Each compute leaves its report on ``cluster.last_run`` (:mod:`dask_serverless.report`): the
time of each phase and what the batches reported (invocations, store operations and bytes),
and offers it to the open ``performance_report`` blocks.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import cloudpickle
from dask.callbacks import local_callbacks, unpack_callbacks

from dask_serverless import _core
from dask_serverless._config import configuration_changes
from dask_serverless._ingest import IngestedGraph, flat_keys, ingest, pack_results
from dask_serverless._serialize import dumps_tasks, loads
from dask_serverless._validate import check_integer
from dask_serverless.errors import SerializationError
from dask_serverless.report import RunReport, record

if TYPE_CHECKING:
    from dask_serverless._base import ServerlessCluster

POLL_SECONDS = 0.05


def compute(
    cluster: ServerlessCluster,
    dsk: Any,
    keys: Any,
    callbacks=None,
    retries: int | None = None,
    **_ignored,
) -> Any:
    """Run one Dask graph on ``cluster``; keyword arguments Dask passes but we do not use are
    accepted and ignored.

    ``retries`` (Dask's keyword): how many times a batch whose task raised is run again before
    the exception reaches the caller; default none. Functions that die are redone anyway (see
    the recovery budgets in docs/reliability.md)."""
    task_retries = check_integer("retries", 0 if retries is None else retries, 0, 100)
    clock = _Clock()
    with local_callbacks(callbacks) as active_callbacks:
        _, _, pretask, posttask, _ = unpack_callbacks(active_callbacks)
        callback_graph: dict = {}
        state: dict = {}
        started: list = []
        succeeded = False
        try:
            with _garbage_collection_paused():
                graph = ingest(dsk, keys)
            clock.lap("ingest")
            callback_graph = graph.graph
            for callback in active_callbacks:
                if callback[0]:
                    callback[0](callback_graph)
                started.append(callback)
            if active_callbacks:
                state = _callback_state(graph)
                for callback in active_callbacks:
                    if callback[1]:
                        callback[1](callback_graph, state)
            values = _run(cluster, graph, state, pretask, posttask, clock, task_retries)
            succeeded = True
        finally:
            for callback in started:
                if callback[4]:
                    callback[4](callback_graph, state, not succeeded)
            cluster.last_run = RunReport(
                clock.summary(succeeded),
                clock.records,
                clock.keys,
                clock.plan,
                cluster._pricing(),
            )
            record(cluster.last_run)
    return pack_results(keys, values)


@contextlib.contextmanager
def _garbage_collection_paused():
    """Ingest and upload allocate a few objects per task and free none: the cyclic garbage
    collector would walk them all again and again (a third of the time on 100,000 tasks)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Clock:
    """Seconds spent in each phase of a compute, and the run's own statistics."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.counts: dict = {}
        # What the run report is made of, once a run started.
        self.records: dict | None = None
        self.keys: list = []
        self.plan: Any = None

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[f"{phase}_seconds"] = now - self.last
        self.last = now

    def mark(self, name: str) -> None:
        self.phases[f"{name}_seconds"] = time.perf_counter() - self.start

    def summary(self, succeeded: bool) -> dict:
        return {
            "succeeded": succeeded,
            **self.counts,
            **self.phases,
            "total_seconds": time.perf_counter() - self.start,
        }


def _callback_state(graph: IngestedGraph) -> dict:
    keys = graph.keys
    dependencies = {
        key: {keys[number] for number in numbers if number < len(keys)}
        for key, numbers in zip(keys, graph.dependencies, strict=True)
    }
    dependents: dict = {key: set() for key in keys}
    for key, needed in dependencies.items():
        for dependency in needed:
            dependents[dependency].add(key)
    return {
        "cache": {},
        "dependencies": dependencies,
        "dependents": dependents,
        "waiting": set(keys),
        "waiting_data": {},
        "ready": set(),
        "running": set(),
        "finished": set(),
        "released": set(),
    }


def _run(
    cluster: ServerlessCluster,
    graph: IngestedGraph,
    state,
    pretask,
    posttask,
    clock,
    task_retries: int = 0,
) -> dict:
    values = dict(graph.literals)
    if graph.empty:
        clock.counts = {"tasks": 0, "batches": 0}
        return values
    plan = plan_graph(graph, cluster.parallelism, cluster.batches_per_function)
    clock.lap("plan")
    run_id = f"run-{uuid.uuid4().hex[:16]}"
    clock.counts = {"run_id": run_id, "tasks": len(graph.keys), "batches": plan.batch_count()}
    run = cluster._start_run(run_id, plan, task_retries)
    try:
        events = run.start()
        with _garbage_collection_paused():
            _upload(run, plan, graph, plan.upload_order(), clock)
        clock.lap("upload")
        while True:
            for event in events:
                if isinstance(event, _core.TasksFinished):
                    if event.warnings:
                        _emit_warnings(graph, event.warnings)
                    if state:
                        _progress(graph, event.tasks, state, pretask, posttask)
                else:
                    clock.lap("run")
                    for number in dict.fromkeys(graph.outputs):
                        values[graph.keys[number]] = loads(run.fetch(number))
                    clock.lap("fetch")
                    cluster._end_run(run, "succeeded")
                    return values
            events = run.poll(POLL_SECONDS)
    except BaseException as error:
        outcome = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        note = cluster._end_run(run, outcome)
        if note is not None:
            error.add_note(note)
        raise
    finally:
        clock.counts.update(run.statistics().to_dict())
        clock.records = run.records()
        clock.records["dependencies"] = graph.dependencies
        clock.keys = graph.keys
        clock.plan = plan


def plan_graph(graph: IngestedGraph, parallelism: int, batches_per_function: int) -> _core.Plan:
    """The native plan of an ingested graph."""
    return _core.Plan(
        [repr(key) for key in graph.keys],
        graph.dependencies,
        [repr(key) for key in graph.missing],
        graph.outputs,
        parallelism=parallelism,
        batches_per_function=batches_per_function,
    )


def _upload(run, plan, graph: IngestedGraph, batches: list[int], clock: _Clock) -> None:
    """Uploads in the plan's order; the first upload invokes the first leaf (the run has
    started)."""
    nodes, keys = graph.nodes, graph.keys
    settings = configuration_changes()
    for position, batch in enumerate(batches):
        tasks = plan.batch_tasks(batch)
        inputs = plan.batch_inputs(batch)
        key_of = {number: keys[number] for number in tasks}
        key_of.update((number, keys[number]) for number in inputs)
        payload = (tasks, [nodes[number] for number in tasks], key_of, settings)
        try:
            pickled = dumps_tasks(payload)
        except Exception as error:  # noqa: BLE001 - find and name the culprit
            raise _unpicklable(graph, tasks, error) from error
        run.put_batch(batch, pickled)
        if position == 0:
            clock.mark("started")


def _unpicklable(graph: IngestedGraph, tasks: list[int], error: Exception) -> SerializationError:
    for number in tasks:
        try:
            cloudpickle.dumps(graph.nodes[number])
        except Exception as cause:  # noqa: BLE001
            return SerializationError(
                f"task {graph.keys[number]!r} cannot be pickled, so it cannot be sent to a "
                f"function: {type(cause).__name__}: {cause}. Everything a task holds (its "
                f"function, arguments and constants) must be picklable with cloudpickle."
            )
    return SerializationError(f"a batch of tasks cannot be pickled: {error}")


def _progress(graph: IngestedGraph, tasks: list[int], state, pretask, posttask) -> None:
    keys = graph.keys
    for task in tasks:
        key = keys[task]
        state["waiting"].discard(key)
        state["running"].add(key)
        for callback in pretask:
            callback(key, graph.graph, state)
        state["running"].discard(key)
        state["finished"].add(key)
        for callback in posttask:
            callback(key, None, graph.graph, state, 0)


def _emit_warnings(graph: IngestedGraph, caught: list) -> None:
    """Re-emits warnings raised in tasks, under the caller's own filters."""
    for warning in caught:
        key = graph.keys[warning.task]
        message = _warning_message(warning)
        category = type(message) if isinstance(message, Warning) else _category(warning.category)
        filename = warning.filename or "<task>"
        module = os.path.splitext(os.path.basename(filename))[0] or "<task>"
        registry = _WARNING_REGISTRIES.setdefault(filename, {})
        warnings.warn_explicit(
            message,
            category,
            f"{filename} (task {key!r})",
            warning.lineno,
            module=module,
            registry=registry,
        )


# One registry per source file, as Python keeps one per module: a warning the filters show
# "once per location" is shown once, not once per task.
_WARNING_REGISTRIES: dict[str, dict] = {}


def _warning_message(warning) -> Warning | str:
    if warning.pickled is not None:
        try:
            message = cloudpickle.loads(warning.pickled)
        except Exception:  # noqa: BLE001 - fall back to the category's name and the text
            message = None
        if isinstance(message, Warning):
            return message
    return warning.message


def _category(name: str) -> type[Warning]:
    module_name, _, qualified = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name or "builtins"), qualified)
    except (ImportError, AttributeError, ValueError):
        return UserWarning
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning


__all__ = ["compute", "flat_keys", "plan_graph"]
