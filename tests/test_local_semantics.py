"""What Dask's local schedulers give that users rely on, given by functions too: warnings in the
caller, inputs a task may write into, results that are ordinary writable arrays, progress task
by task while a cluster runs."""

from __future__ import annotations

import os
import time
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from dask import delayed
from dask.callbacks import Callback

from dask_serverless import LocalCluster
from dask_serverless._ingest import ingest
from dask_serverless._scheduler import plan_graph


def warns_and_divides(value):
    warnings.warn(f"careful with {value}", UserWarning, stacklevel=1)
    return np.float64(1.0) / np.float64(0.0) + value


class CustomWarning(UserWarning):
    pass


def warns_custom(value):
    warnings.warn("a warning of its own category", CustomWarning, stacklevel=1)
    return value


def test_a_task_warning_is_raised_in_the_caller(cluster):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = delayed(warns_and_divides)(3, dask_key_name="warner").compute(
            scheduler=cluster.get
        )
    assert result == np.inf
    messages = {(record.category, str(record.message)) for record in caught}
    assert (UserWarning, "careful with 3") in messages
    # NumPy's own RuntimeWarning comes along, with its category.
    assert (RuntimeWarning, "divide by zero encountered in scalar divide") in messages
    # The task's key is on every record.
    assert all("'warner'" in record.filename for record in caught)


def test_task_warnings_obey_the_callers_filters(cluster):
    value = delayed(warns_and_divides)(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("always", UserWarning)
        value.compute(scheduler=cluster.get)
    assert [record.category for record in caught] == [UserWarning]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(UserWarning, match="careful with 5"):
            value.compute(scheduler=cluster.get)


def test_a_warning_of_a_custom_category_keeps_its_category(cluster):
    with pytest.warns(CustomWarning, match="its own category"):
        delayed(warns_custom)(1).compute(scheduler=cluster.get)


def add_one_in_place(block):
    block += 1
    return block


def _invocation() -> tuple[int, int]:
    """The invocation running this task: its process and its number in that process."""
    from dask_serverless import handler

    return os.getpid(), handler._invocation_count


def write_first(array):
    array[0] = 5
    return _invocation(), int(array.sum())


def sum_of(array):
    return _invocation(), int(array.sum())


def test_inputs_written_in_place_as_on_the_processes_scheduler(cluster):
    x = da.arange(10, chunks=5)
    y = x.map_blocks(add_one_in_place)
    expected = (x + y).sum().compute(scheduler="processes")
    assert (x + y).sum().compute(scheduler=cluster.get) == expected
    np.testing.assert_array_equal(y.compute(scheduler=cluster.get), np.arange(1, 11))


def test_a_write_into_an_input_never_reaches_another_function(cluster):
    """Readers of one stored value in other functions see it unchanged, whoever writes into
    their copy. Inside one invocation tasks share values, as with the threaded scheduler: a
    reader in the invocation of a writer may see the change, and which batches one
    invocation runs in a row depends on timing, so the test tells readers apart by the
    invocation that ran them, not by the plan."""
    base = delayed(np.arange)(100_000, dask_key_name="base")
    written = [delayed(write_first)(base, dask_key_name=f"writes-{i}") for i in range(6)]
    sums = [delayed(sum_of)(base, dask_key_name=f"sums-{i}") for i in range(6)]
    everything = delayed(list)([*written, *sums])
    original = int(np.arange(100_000).sum())
    for _ in range(5):
        results = everything.compute(scheduler=cluster.get)
        writers = {invocation for invocation, _ in results[:6]}
        assert all(total == original + 5 for _, total in results[:6])
        apart = [total for invocation, total in results[6:] if invocation not in writers]
        assert apart, "every reader ran in a writer's invocation"
        assert apart == [original] * len(apart)


def test_results_are_ordinary_writable_arrays(cluster):
    result = da.arange(1_000_000, chunks=250_000).compute(scheduler=cluster.get)
    assert result.flags.writeable
    result += 1
    assert result[0] == 1
    again = da.ones(10, chunks=5).compute(scheduler=cluster.get)
    again[3] = 7
    assert again.sum() == 16


def slow_step(previous, seconds):
    time.sleep(seconds)
    return previous + 1


class Arrivals(Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def _posttask(self, key, result, dsk, state, worker_id):
        self.times.append(time.monotonic())


def test_progress_arrives_task_by_task_while_a_cluster_runs():
    # One chain planned as one cluster, run by one invocation for about two seconds.
    value = delayed(0)
    for _ in range(20):
        value = delayed(slow_step)(value, 0.1)
    arrivals = Arrivals()
    with (
        LocalCluster(
            max_concurrency=1, batches_per_function=1, memory_mb=1024, threads_per_function="client"
        ) as single,
        arrivals,
    ):
        plan = plan_graph(ingest(value.__dask_graph__(), value.__dask_keys__()), 1, 1)
        assert plan.batch_count() == 1
        started = time.monotonic()
        assert value.compute(scheduler=single.get) == 20
        ended = time.monotonic()
    assert len(arrivals.times) == 21  # the literal 0 and twenty steps
    # The first tasks are known long before the last one ran, in several batches.
    assert arrivals.times[0] < ended - 1.0
    batches = len(set(arrivals.times))
    assert batches >= 5, batches
    assert all(started <= moment <= ended for moment in arrivals.times)


def test_progress_bar_counts_every_task_once(cluster, capsys):
    from dask.diagnostics import ProgressBar

    x = da.ones((200, 200), chunks=(20, 20))
    with ProgressBar(dt=0.01):
        assert (x + x.T).sum().compute(scheduler=cluster.get) == 80_000
    assert "100%" in capsys.readouterr().out


class ComputesInsideACompute(Callback):
    def __init__(self):
        super().__init__()
        self.inner: list[int] = []

    def _pretask(self, key, dsk, state):
        if not self.inner:
            # The default scheduler is the cluster's, which is busy with this very compute.
            self.inner.append(delayed(abs)(-5).compute())


def test_a_compute_inside_a_compute_of_the_same_thread_does_not_wait_for_itself():
    with LocalCluster(max_concurrency=1, memory_mb=512, timeout_s=60) as running:
        callback = ComputesInsideACompute()
        with callback:
            assert delayed(sum)([1, 2, 3]).compute(scheduler=running.get) == 6
    assert callback.inner == [5]


def reads_setting(name):
    return dask.config.get(name, None)


def test_tasks_run_under_the_callers_dask_configuration(cluster):
    with dask.config.set({"dask-serverless-test.option": 7, "array.chunk-size": "64MiB"}):
        assert (
            delayed(reads_setting)("dask-serverless-test.option").compute(scheduler=cluster.get)
            == 7
        )
        assert delayed(reads_setting)("array.chunk-size").compute(scheduler=cluster.get) == (
            "64MiB"
        )
    # Outside the block the functions see Dask's defaults again.
    assert (
        delayed(reads_setting)("dask-serverless-test.option").compute(scheduler=cluster.get) is None
    )


def test_a_value_may_refer_to_what_only_an_earlier_batch_of_the_invocation_holds():
    import weakref

    kept_alive: list = []

    def weak_proxy_of_a_new_array(_):
        array = np.arange(6)
        kept_alive.append(array)  # only this closure, part of the task, keeps it alive
        return weakref.proxy(array)

    # Batches of one task: the chain is one invocation becoming batch after batch, and the
    # proxy's referent lives in the first batch's task.
    with LocalCluster(
        max_concurrency=1, batches_per_function=1000, memory_mb=512, timeout_s=60
    ) as running:
        proxy = delayed(weak_proxy_of_a_new_array)(0)
        total = delayed(lambda values: int(np.sum(values)))(proxy)
        graph = ingest(total.__dask_graph__(), total.__dask_keys__())
        assert plan_graph(graph, 1, 1000).batch_count() == 2
        assert total.compute(scheduler=running.get) == 15


def test_a_copy_of_dask_configuration_keeps_the_cluster(cluster):
    import copy

    with dask.config.set(scheduler=cluster.get):
        copied = copy.deepcopy(dask.config.config)
    assert copied["scheduler"] == cluster.get
    assert copy.copy(cluster) is cluster
