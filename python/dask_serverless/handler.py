"""The function handler: the same code runs on the local platform and on AWS Lambda.

An invocation event names a run and a batch. The native executor (``_core.Invocation``) loads
the batch's tasks and inputs, and hands control back here only to run tasks, to drop values
or to finish; fan-in, invocations of released children and reports happen natively.

Values live in ``values`` (Dask key -> value) for the whole invocation, so a batch that this
invocation *becomes* reads its parent's outputs from memory. After each task the values no
later task of the batch needs are dropped, except outputs that leave the batch. Values are
keyed by the graph's keys (what the client planned), never by ``node.key``: a node reached
through an alias (``dask.graph_manipulation`` makes such graphs) may carry another key.

What the caller sees as with Dask's local schedulers:

* **progress**: finished tasks are streamed to the client while the batch runs, grouped by
  time (at most one message per ``PROGRESS_SECONDS``), so a long batch moves a progress bar
  task by task;
* **warnings** raised by a task are recorded (all of them: the caller's filters decide) and
  re-emitted in the caller's process;
* **inputs** loaded from the store are private copy-on-write mappings: a task may write into
  them without changing what other tasks read;
* **nested computes**: a task that calls ``.compute()`` runs the inner graph here, on Dask's
  synchronous scheduler;
* **configuration**: tasks run under the caller's Dask settings (those that differ from Dask's
  defaults travel with each batch, see :mod:`dask_serverless._config`).

**Stopping between tasks**: before each task the handler asks the executor whether to go on
(``Invocation.boundary``, which looks at the store at most once a second): a batch that another
invocation finished first (a backup), or whose client is gone (its lease stopped changing), is
abandoned there.

The unpickled tasks of every batch an invocation runs stay alive until the invocation ends:
values handed to the next batch may refer to objects that only the tasks hold (a weak
reference to a function's closure, for example).

When ``DASK_SERVERLESS_PROGRESS_PATH`` is set (the local platform sets it), the handler writes
the task it is running to that file, so that a function stopped for its memory size or its
timeout is reported with the task it was running. The file is memory-mapped: a note costs a
copy into shared memory, not a system call (the platform reads up to the first NUL byte).
"""

from __future__ import annotations

import json
import mmap
import os
import time
import traceback
import warnings
from typing import Any

import cloudpickle
import dask

from dask_serverless import _core
from dask_serverless._serialize import dumps, loads

#: Longest time between two progress messages of a running batch.
PROGRESS_SECONDS = 0.1
PROGRESS_SIZE = 4096

_invocation_count = 0
_progress_map: mmap.mmap | None = None

# A task that calls .compute() runs its graph inside this function.
dask.config.set(scheduler="sync")


def _note_progress(text: str) -> None:
    global _progress_map
    if _progress_map is None:
        path = os.environ.get("DASK_SERVERLESS_PROGRESS_PATH")
        if not path:
            return
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(descriptor, PROGRESS_SIZE)
            _progress_map = mmap.mmap(descriptor, PROGRESS_SIZE)
        finally:
            os.close(descriptor)
    data = text.encode("utf-8", "replace")[: PROGRESS_SIZE - 1] + b"\0"
    _progress_map[: len(data)] = data


def handler(event: dict, context: Any) -> dict:
    global _invocation_count
    _invocation_count += 1
    if event.get("ping"):
        return {"pong": True, "pid": os.getpid()}
    invocation_id = getattr(context, "aws_request_id", "") or ""
    invocation = _core.Invocation(json.dumps(event), invocation_id, _invocation_count == 1)
    values: dict[Any, Any] = {}
    key_of: dict[int, Any] = {}
    held_tasks: list[Any] = []
    batches_run = 0
    while True:
        step = invocation.step()
        if isinstance(step, _core.RunBatchStep):
            batches_run += 1
            _run_batch(invocation, step, values, key_of, held_tasks)
        elif isinstance(step, _core.RetainStep):
            keep = {key_of[task] for task in step.tasks if task in key_of}
            for key in [key for key in values if key not in keep]:
                del values[key]
        else:
            _note_progress("no task (between invocations)")
            return {"batches": batches_run}


def _run_batch(invocation: Any, step: Any, values: dict, key_of: dict, held: list) -> None:
    batch = step.batch
    try:
        task_ids, nodes, keys, settings = loads([step.payload])
    except Exception as error:  # noqa: BLE001 - reported to the client with its cause
        invocation.failed(f"could not unpickle the tasks of batch {batch}: {error!r}")
        return
    held.append(nodes)
    key_of.update(keys)
    with dask.config.set(settings):
        _run_tasks(invocation, step, task_ids, nodes, values, key_of)


def _run_tasks(
    invocation: Any, step: Any, task_ids: list, nodes: list, values: dict, key_of: dict
) -> None:
    batch = step.batch
    try:
        for task, parts in step.inputs:
            values[key_of[task]] = loads(parts)
    except Exception as error:  # noqa: BLE001
        invocation.failed(f"could not unpickle an input of batch {batch}: {error!r}")
        return

    stored = set(step.stored_outputs)
    leaving = stored.union(step.memory_outputs)
    release_after = step.release_after
    records: list[tuple[int, int, int, int]] = []
    task_warnings: list[tuple] = []
    streamed = 0
    next_progress = time.monotonic() + PROGRESS_SECONDS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for position, (task, node) in enumerate(zip(task_ids, nodes, strict=True)):
            if not invocation.boundary():
                # Someone else finished the batch, or the client is gone: `step` ends it.
                return
            key = key_of[task]
            _note_progress(f"task {key!r} (batch {batch})")
            start = time.time_ns()
            try:
                value = node({dependency: values[dependency] for dependency in node.dependencies})
            except Exception as error:  # noqa: BLE001 - the task's own exception goes to the caller
                invocation.task_failed(task, *_describe(error))
                return
            duration = time.time_ns() - start
            if caught:
                task_warnings.extend(_describe_warning(task, warning) for warning in caught)
                caught.clear()
            values[key] = value
            stored_bytes = 0
            if task in stored:
                try:
                    parts = dumps(value)
                except Exception as error:  # noqa: BLE001
                    invocation.result_unpicklable(
                        task,
                        f"the result of task {key!r} cannot be pickled, so it cannot leave the "
                        f"function: {type(error).__name__}: {error}",
                    )
                    return
                stored_bytes = invocation.put_value(task, parts)
            records.append((task, start // 1000, duration // 1000, stored_bytes))
            for released in release_after[position]:
                if released not in leaving:
                    values.pop(key_of[released], None)
            if time.monotonic() >= next_progress:
                invocation.progress(records[streamed:], task_warnings)
                streamed = len(records)
                task_warnings = []
                next_progress = time.monotonic() + PROGRESS_SECONDS
    invocation.tasks_finished(records[streamed:], task_warnings)


def _describe(error: BaseException) -> tuple[str, str, str, bytes | None]:
    """Type name, message, traceback and (when possible) the pickled exception."""
    error_type = type(error)
    type_name = f"{error_type.__module__}.{error_type.__qualname__}"
    text = "".join(traceback.format_exception(error))
    try:
        pickled: bytes | None = cloudpickle.dumps(error)
        cloudpickle.loads(pickled)
    except Exception:  # noqa: BLE001 - fall back to type name and message
        pickled = None
    return type_name, str(error), text, pickled


def _describe_warning(task: int, caught: warnings.WarningMessage) -> tuple:
    """``(task, category, message, filename, lineno, pickled warning)`` of a caught warning."""
    category = caught.category
    message = caught.message
    try:
        pickled: bytes | None = cloudpickle.dumps(message)
    except Exception:  # noqa: BLE001 - the category's name and the text still travel
        pickled = None
    return (
        task,
        f"{category.__module__}.{category.__qualname__}",
        str(message),
        str(caught.filename),
        int(caught.lineno or 0),
        pickled,
    )
