"""Failures end with a clear error within seconds, never a hang, and leave nothing behind."""

from __future__ import annotations

import os
import threading
import time

import dask
import numpy as np
import pytest
from dask import delayed
from dask._task_spec import Task, TaskRef

from dask_serverless import (
    FunctionError,
    FunctionMemoryError,
    FunctionTimeoutError,
    GraphValidationError,
    LocalCluster,
    SerializationError,
)


class CustomError(Exception):
    pass


def fail_with(error):
    raise error


def test_task_exception_keeps_type_and_message(cluster):
    value = delayed(fail_with)(ZeroDivisionError("division by zero in task"))
    with pytest.raises(ZeroDivisionError) as raised:
        value.compute(scheduler=cluster.get)
    assert type(raised.value) is ZeroDivisionError
    assert str(raised.value) == "division by zero in task"
    # The function's traceback travels as a note, not in the message.
    assert any("fail_with" in note for note in raised.value.__notes__)


def test_custom_exception_type_reaches_caller(cluster):
    value = delayed(fail_with)(CustomError("custom", 42))
    with pytest.raises(CustomError) as raised:
        value.compute(scheduler=cluster.get)
    assert raised.value.args == ("custom", 42)


def test_cluster_usable_after_task_exception(cluster):
    failing = delayed(fail_with)(KeyError("missing"))
    with pytest.raises(KeyError):
        failing.compute(scheduler=cluster.get)
    assert delayed(sum)([1, 2, 3]).compute(scheduler=cluster.get) == 6


def test_exception_in_middle_of_large_graph(cluster):
    values = [delayed(lambda i: i)(i) for i in range(200)]
    values[150] = delayed(fail_with)(ValueError("task 150 failed"))
    with pytest.raises(ValueError, match="task 150 failed"):
        delayed(sum)(values).compute(scheduler=cluster.get)


def test_unpicklable_task_is_named(cluster):
    lock = threading.Lock()
    value = delayed(lambda held: 1)(lock, dask_key_name="holds-a-lock")
    with pytest.raises(SerializationError, match="holds-a-lock.*cannot be pickled"):
        value.compute(scheduler=cluster.get)


def test_unpicklable_result_is_reported(cluster):
    value = delayed(threading.Lock)(dask_key_name="makes-a-lock")
    with pytest.raises(SerializationError, match="'makes-a-lock'.*cannot be pickled"):
        value.compute(scheduler=cluster.get)


def test_cycle_is_named(cluster):
    graph = {"a": (abs, "b"), "b": (abs, "c"), "c": (abs, "a")}
    with pytest.raises(GraphValidationError, match="cycle"):
        cluster.get(graph, "a")


def test_missing_dependency_is_named(cluster):
    graph = {"b": Task("b", abs, TaskRef("nowhere"))}
    with pytest.raises(GraphValidationError, match="'b'.*'nowhere'"):
        cluster.get(graph, "b")


def test_missing_output_key_is_key_error(cluster):
    with pytest.raises(KeyError):
        cluster.get({"x": 1}, "y")


def exit_process():
    os._exit(3)


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def allocate(megabytes):
    """Grows by 16 MiB steps until the platform stops it, whenever its memory sampler looks; a
    platform that enforced nothing would see it return after ``megabytes``."""
    blocks = []
    while len(blocks) * 16 < megabytes:
        blocks.append(np.ones(16 * 1024 * 1024 // 8))
    return float(sum(block.sum() for block in blocks))


@pytest.fixture
def small_cluster():
    with LocalCluster(max_concurrency=1, memory_mb=400, timeout_s=4, prewarm=False) as running:
        pids = []
        root = running._store_root
        yield running, pids
        pids.extend(running._platform.worker_pids())
    assert not os.path.exists(root)
    for pid in pids:
        for _ in range(50):
            if not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
                break
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_worker_that_dies_is_reported(small_cluster):
    running, _ = small_cluster
    value = delayed(exit_process)(dask_key_name="exits")
    started = time.monotonic()
    with pytest.raises(FunctionError, match="exit status 3.*exits"):
        value.compute(scheduler=running.get)
    assert time.monotonic() - started < 30
    assert delayed(abs)(-2).compute(scheduler=running.get) == 2
    assert running._store.list("") == []


def test_task_over_timeout_is_reported(small_cluster):
    running, _ = small_cluster
    value = delayed(sleep_for)(60, dask_key_name="sleeps")
    started = time.monotonic()
    with pytest.raises(FunctionTimeoutError, match="timed out.*sleeps"):
        value.compute(scheduler=running.get)
    assert time.monotonic() - started < 30
    assert running._store.list("") == []


def test_task_over_memory_size_is_reported(small_cluster):
    running, _ = small_cluster
    value = delayed(allocate)(4096, dask_key_name="allocates")
    with pytest.raises(FunctionMemoryError, match="400 MB.*allocates"):
        value.compute(scheduler=running.get)
    assert running._store.list("") == []


def test_get_outside_running_cluster_is_clear():
    stopped = LocalCluster(max_concurrency=1)
    with pytest.raises(RuntimeError, match="not running"):
        stopped.get({"x": 1}, "x")


def test_invalid_configuration_is_clear():
    with pytest.raises(ValueError, match="memory_mb"):
        LocalCluster(memory_mb=1)
    with pytest.raises(ValueError, match="timeout_s"):
        LocalCluster(timeout_s=0)


def test_scheduler_restored_and_nothing_left_behind():
    from conftest import shared_memory_roots

    roots_before = shared_memory_roots()
    previous = dask.config.get("scheduler", None)
    with LocalCluster(max_concurrency=2, memory_mb=512) as running:
        assert dask.config.get("scheduler") == running.get
        assert delayed(sum)([1, 2]).compute() == 3
        pids = running._platform.worker_pids()
        assert pids
        root = running._store_root
        assert os.path.isdir(root)
    assert dask.config.get("scheduler", None) == previous
    assert not os.path.exists(root)
    # Nothing new; the start may have removed what dead clients had left.
    assert shared_memory_roots() <= roots_before
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
