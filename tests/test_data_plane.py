"""The data plane: zero-copy reads, large values and large graphs go through the store."""

from __future__ import annotations

import numpy as np
from dask import delayed

from dask_serverless import LocalCluster, _core


def make_block(seed):
    return np.random.RandomState(seed).random(256 * 1024)  # 2 MiB


def describe_inputs(*blocks):
    return [(bool(block.flags.owndata), bool(block.flags.writeable)) for block in blocks]


def test_inputs_from_other_clusters_are_zero_copy_memory_maps():
    with LocalCluster(
        max_concurrency=2, batches_per_function=4, memory_mb=1024, threads_per_function="client"
    ) as running:
        blocks = [delayed(make_block)(seed) for seed in range(8)]
        flags = delayed(describe_inputs)(*blocks).compute(scheduler=running.get)
    assert len(flags) == 8
    # Values produced in the consumer's own cluster are ordinary arrays; values loaded from
    # the shared-memory store are views on the mapped object: not owned, and writable (the map
    # is private, copy-on-write).
    assert (False, True) in flags
    assert (True, True) in flags


def test_large_values_returned_to_the_client(cluster):
    block = delayed(np.arange)(3_000_000, dtype=np.float64)  # 24 MB, over every payload limit
    result = block.compute(scheduler=cluster.get)
    np.testing.assert_array_equal(result, np.arange(3_000_000, dtype=np.float64))


def test_large_constants_inside_the_graph(cluster):
    constant = np.ones(2_000_000)  # 16 MB embedded in a task, over the 1 MB event limit
    total = delayed(np.sum)(constant)
    assert total.compute(scheduler=cluster.get) == 2_000_000.0


def test_many_tasks_in_few_invocations(cluster):
    before = cluster.statistics()["invocations"]
    values = [delayed(abs)(-i) for i in range(5000)]
    total = delayed(sum)(values)
    assert total.compute(scheduler=cluster.get) == sum(range(5000))
    invocations = cluster.statistics()["invocations"] - before
    assert 0 < invocations < 100, invocations


def test_plan_explain_is_readable():
    plan = _core.Plan(["a", "b", "c"], [[], [0], [0, 1]], [], [2], parallelism=1)
    text = plan.explain()
    assert "3 tasks" in text
    assert "batch 0" in text
    # Target size ceil(3 tasks / (1 function * 4 batches per function)) = 1: a batch a task.
    assert "target size 1" in text
    assert plan.batch_count() == 3
    assert [plan.batch_tasks(batch) for batch in range(3)] == [[0], [1], [2]]
    assert plan.batch_parents(2) == [0, 1]


def big_block(megabytes):
    return np.ones(megabytes * 1024 * 1024 // 8)


def test_a_result_near_half_the_memory_size_is_stored_without_a_copy():
    """Storing a value of size S needs S and a small constant, not 2 S: its buffers go to the
    store as they are."""
    with LocalCluster(max_concurrency=1, memory_mb=1024, timeout_s=120) as running:
        block = delayed(big_block)(480).compute(scheduler=running.get)
    assert block.nbytes == 480 * 1024 * 1024
    assert block[0] == 1.0 and block[-1] == 1.0
