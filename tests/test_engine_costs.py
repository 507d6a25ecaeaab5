"""What a compute costs, and the paths that keep it low: ``last_run``, zero-work runs, the
ingest of ``dask.delayed`` graphs, and the numeric threads of each function."""

from __future__ import annotations

import operator
import os
import subprocess
import sys

import dask
import dask.array as da
import pytest
from dask import delayed

from dask_serverless import LocalCluster, _core
from dask_serverless._ingest import _unoptimized_delayed_graph, ingest


def tree_sum(count: int):
    values = [delayed(number) for number in range(count)]
    while len(values) > 1:
        values = [delayed(operator.add)(*values[i : i + 2]) for i in range(0, len(values), 2)]
    return values[0]


def test_last_run_reports_phases_invocations_and_store_traffic(cluster):
    assert cluster.get({"x": 1}, "x") == 1
    total = tree_sum(256)
    assert total.compute(scheduler=cluster.get) == sum(range(256))
    last = cluster.last_run
    assert last["succeeded"] is True
    assert last["run_id"].startswith("run-")
    assert last["tasks"] == 256 + 255
    assert 1 <= last["batches"] < last["tasks"]
    # Each cluster runs in an invocation or in the one that became it.
    assert 1 <= last["invocations"] <= last["batches"] == last["batches_finished"]
    # The batches' uploads and loads, at least; the final fetch and delete.
    assert last["store_operations"] >= 2 * last["batches"] + 2
    assert last["task_bytes"] > 0
    assert last["store_bytes_written"] == last["task_bytes"] + last["value_bytes_written"]
    # The result crossed to the client at least.
    assert last["boundary_bytes"] > 0
    phases = [last[f"{phase}_seconds"] for phase in ("ingest", "plan", "upload", "run", "fetch")]
    assert all(seconds > 0 for seconds in phases), phases
    assert sum(phases) <= last["total_seconds"]
    assert 0 < last["started_seconds"] <= last["total_seconds"]


def test_last_run_is_kept_when_the_compute_fails(cluster):
    def fail(value):
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        delayed(fail)(1).compute(scheduler=cluster.get)
    assert cluster.last_run["succeeded"] is False
    assert cluster.last_run["tasks"] == 1


def test_a_zero_work_run_plans_and_runs_the_protocol_without_python():
    leaves = 1000
    dependencies = [[] for _ in range(leaves)] + [list(range(leaves))]
    cost = _core.zero_work(dependencies, [leaves], parallelism=2, batches_per_function=4)
    assert cost["tasks"] == leaves + 1
    assert cost["batches"] > 1
    assert 1 <= cost["invocations"] <= cost["batches"]
    assert cost["microseconds_per_task"] > 0
    with pytest.raises(ValueError, match="cycle"):
        _core.zero_work([[1], [0]], [0])


def graph_passed_to_get(*collections):
    """What ``dask.compute`` hands a scheduler's ``get``."""
    seen = []

    def capture(dsk, keys, **kwargs):
        seen.append(dsk)
        raise LookupError("captured")

    with pytest.raises(LookupError):
        dask.compute(*collections, scheduler=capture)
    return seen[0]


def test_delayed_graphs_skip_dask_culling_and_still_cull():
    left, right = tree_sum(32), tree_sum(64)
    total = delayed(operator.add)(left, right)
    dsk = graph_passed_to_get(total)
    merged = _unoptimized_delayed_graph(dsk)
    assert merged is not None and total.key in merged and left.key in merged
    # Asked for one branch only, ingest keeps that branch.
    graph = ingest(dsk, [left.key])
    assert len(graph.keys) == 32 + 31
    assert total.key not in graph.keys and right.key not in graph.keys
    assert ingest(dsk, [total.key]).keys[0] == total.key


def test_other_collections_and_fused_delayed_graphs_take_dask_own_path():
    array = da.ones(10, chunks=5).sum()
    assert _unoptimized_delayed_graph(graph_passed_to_get(array)) is None
    total = tree_sum(8)
    with dask.config.set({"optimization.fuse.delayed": True}):
        assert _unoptimized_delayed_graph(graph_passed_to_get(total)) is None


def read_thread_variables():
    return {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def test_each_function_gets_its_share_of_numeric_threads(monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    expected = str(max(1, (os.cpu_count() or 1) // 2))
    with LocalCluster(max_concurrency=2, memory_mb=512, prewarm=False) as running:
        assert running.threads_per_function == int(expected)
        seen = delayed(read_thread_variables)().compute(scheduler=running.get)
    assert seen == {"OMP_NUM_THREADS": expected, "OPENBLAS_NUM_THREADS": expected}
    with LocalCluster(
        max_concurrency=1, memory_mb=512, threads_per_function=3, prewarm=False
    ) as running:
        seen = delayed(read_thread_variables)().compute(scheduler=running.get)
    assert seen == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with LocalCluster(
        max_concurrency=1, memory_mb=512, threads_per_function="client", prewarm=False
    ) as running:
        seen = delayed(read_thread_variables)().compute(scheduler=running.get)
    assert seen == {"OMP_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": "2"}
    with pytest.raises(ValueError, match="threads_per_function"):
        LocalCluster(threads_per_function=0)
    with pytest.raises(ValueError, match="threads_per_function"):
        LocalCluster(threads_per_function="many")


_NUMBERING = """
import sys
sys.path.insert(0, sys.argv[1])
from chaos_suite import random_graph
from dask_serverless._ingest import ingest
from dask_serverless._scheduler import plan_graph
import dask
collection = random_graph(184)
seen = []
def capture(dsk, keys, **kwargs):
    seen.append((dsk, keys))
    return [None] * len(collection)
dask.compute(collection, scheduler=capture)
graph = ingest(*seen[0])
plan = plan_graph(graph, 4, 2)
print([str(key) for key in graph.keys], graph.dependencies, plan.explain())
"""


def test_the_same_graph_gets_the_same_task_numbers_and_plan_in_every_process():
    # Sets iterate in an order that changes with the process's string hashing; a seeded fault
    # must replay on the same batches.
    tests = os.path.dirname(os.path.abspath(__file__))
    numberings = {
        subprocess.run(
            [sys.executable, "-c", _NUMBERING, tests],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(1, 6)
    }
    assert len(numberings) == 1, numberings
