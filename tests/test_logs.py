"""What functions print on the local platform: kept per invocation for ``cluster.get_logs()``,
off the client's standard error unless the cluster is ``verbose``."""

from __future__ import annotations

import sys

import dask
import pytest
from dask import delayed

from dask_serverless import LocalCluster
from dask_serverless.errors import ServerlessError


def shout(number):
    print(f"task {number} says hello on stdout")
    print(f"task {number} says hello on stderr", file=sys.stderr)
    return number + 1


def invocation_of(cluster, key) -> str:
    """The invocation that ran the task ``key`` in the latest compute."""
    tasks = cluster.last_run.tasks
    return tasks.set_index("key").loc[str(key), "invocation"]


def test_each_invocation_keeps_its_own_output_off_the_clients_stderr(capfd):
    with LocalCluster(max_concurrency=2, memory_mb=512, timeout_s=60) as cluster:
        assert len(cluster.get_logs()) == 0, "no compute yet, no logs"
        values = [delayed(shout)(number) for number in range(4)]
        assert dask.compute(*values) == (1, 2, 3, 4)
        logs = cluster.get_logs()
        printed = capfd.readouterr()
        assert "says hello" not in printed.err + printed.out
        for number, value in enumerate(values):
            invocation = invocation_of(cluster, value.key)
            text = logs[invocation]
            assert f"task {number} says hello on stdout\n" in text, repr(logs)
            assert f"task {number} says hello on stderr\n" in text, repr(logs)
            # Under the invocation that ran it, and no other.
            others = [logs[other] for other in logs if other != invocation]
            assert not any(f"task {number} says" in other for other in others), repr(logs)
            assert logs.omitted_bytes(invocation) == 0
        # Every invocation that reported is there, in the order they started.
        assert set(cluster.last_run.invocations["invocation"]) <= set(logs)
        starts = [logs.started(invocation) for invocation in logs]
        assert starts == sorted(starts)
        assert repr(logs).startswith(f"RunLogs: {len(logs)} invocations\n--- invocation ")
        assert "task 0 says hello on stdout" in repr(logs)

        # Only the latest compute's invocations.
        assert dask.compute(delayed(sum)([1, 2]))[0] == 3
        latest = cluster.get_logs()
        assert not any("says hello" in text for text in latest.values()), repr(latest)
        assert set(latest).isdisjoint(logs)
    with pytest.raises(ServerlessError, match="not running"):
        cluster.get_logs()


def test_a_verbose_cluster_prints_the_output_as_it_comes_and_keeps_it(capfd):
    with LocalCluster(max_concurrency=1, memory_mb=512, timeout_s=60, verbose=True) as cluster:
        value = delayed(shout)(7)
        assert value.compute() == 8
        logs = cluster.get_logs()
        printed = capfd.readouterr().err
    assert "[dask-serverless-executor worker-1] task 7 says hello on stdout" in printed
    assert "[dask-serverless-executor worker-1] task 7 says hello on stderr" in printed
    assert "task 7 says hello on stdout\n" in logs[invocation_of(cluster, value.key)]


def test_a_killed_function_keeps_what_it_printed_before_it_died():
    def print_then_die():
        import os

        print("last words", flush=True)
        os._exit(3)

    with LocalCluster(max_concurrency=1, memory_mb=512, timeout_s=60) as cluster:
        with pytest.raises(ServerlessError):
            delayed(print_then_die)().compute()
        logs = cluster.get_logs()
    assert any("last words\n" in text for text in logs.values()), repr(logs)
