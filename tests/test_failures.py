"""Every failure named right, at once, and nothing left behind: a function that dies in a chain,
timeouts, unpicklable results, a store that fails during cleanup, Ctrl-C, forked processes,
bad arguments. One exception family, raised by the native module itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import dask
import numpy as np
import pytest
from dask import delayed

import dask_serverless
from dask_serverless import (
    ConfigurationError,
    FunctionError,
    FunctionTimeoutError,
    LocalCluster,
    SerializationError,
    ServerlessError,
    _core,
)
from report_checks import check_bill_by_hand

PYTHON = sys.executable


def run_script(source: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs a Python script in a fresh interpreter (signals, forks and exits stay out of the
    test process); fails on a hang."""
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def step(previous, seconds):
    time.sleep(seconds)
    return previous + 1


def die(previous):
    os._exit(3)


@pytest.fixture
def chain_cluster():
    # Batches of one task: a chain is run by one invocation that becomes batch after batch.
    with LocalCluster(
        max_concurrency=1, batches_per_function=1000, memory_mb=512, timeout_s=20, prewarm=True
    ) as running:
        yield running


def test_a_death_in_a_chain_is_redone_then_reported_naming_the_running_batch(chain_cluster):
    value = delayed(0, name="start")
    for number in range(3):
        value = delayed(step)(value, 0.2, dask_key_name=f"step-{number}")
    value = delayed(die)(value, dask_key_name="dies")
    value = delayed(step)(value, 0, dask_key_name="after")
    from dask_serverless._ingest import ingest
    from dask_serverless._scheduler import plan_graph

    plan = plan_graph(ingest(value.__dask_graph__(), value.__dask_keys__()), 1, 1000)
    keys = ingest(value.__dask_graph__(), value.__dask_keys__()).keys
    dying_batch = plan.batch_of(keys.index("dies"))
    assert dying_batch > 0  # not the batch the invocation started with

    started = time.monotonic()
    with pytest.raises(FunctionError) as raised:
        value.compute(scheduler=chain_cluster.get)
    elapsed = time.monotonic() - started
    # A crash is redone three times, each from the chain's head (the values handed over in
    # memory died with the function): four tasks of at most 0.2 s and a fresh worker each time,
    # then the last death is reported at once.
    assert elapsed < 4 * (0.6 + 2.0), elapsed
    error = raised.value
    assert error.batch == dying_batch
    message = str(error)
    assert "on each of 4 attempts" in message
    assert f"batch {dying_batch}" in message
    assert "'dies'" in message
    assert "exit status 3" in message
    assert chain_cluster._store.list("") == []


def test_a_timeout_names_the_limit_of_one_invocation(tmp_path):
    with LocalCluster(
        max_concurrency=1, batches_per_function=1000, timeout_s=2, prewarm=True
    ) as running:
        value = delayed(0)
        for number in range(6):
            value = delayed(step)(value, 0.5, dask_key_name=f"slow-{number}")
        with pytest.raises(FunctionTimeoutError) as raised:
            value.compute(scheduler=running.get)
    message = str(raised.value)
    assert "timeout_s is the limit of one invocation" in message
    assert "raise timeout_s" in message
    assert "finished" in message and "tasks" in message


def makes_a_lock():
    return threading.Lock()


def test_an_unpicklable_result_is_a_serialization_error_naming_the_task(cluster):
    value = delayed(makes_a_lock)(dask_key_name="makes-a-lock")
    with pytest.raises(SerializationError, match="'makes-a-lock'.*cannot be pickled"):
        value.compute(scheduler=cluster.get)
    assert isinstance(SerializationError("x"), TypeError)


def removes_the_store_then_raises(root):
    shutil.rmtree(root)
    raise ValueError("the task's own failure")


def test_a_store_failing_during_cleanup_is_a_note_on_the_tasks_error():
    with LocalCluster(max_concurrency=1, memory_mb=512, timeout_s=30) as running:
        value = delayed(removes_the_store_then_raises)(running._store_root)
        with pytest.raises(ValueError, match="the task's own failure") as raised:
            value.compute(scheduler=running.get)
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "could not delete the objects of run" in notes


def test_ctrl_c_stops_a_compute_within_a_second_and_leaves_nothing():
    result = run_script(
        """
        import glob, os, signal, threading, time
        from dask import delayed
        from dask_serverless import LocalCluster

        def sleeps(seconds):
            time.sleep(seconds)
            return seconds

        with LocalCluster(max_concurrency=2, memory_mb=512, timeout_s=120) as cluster:
            values = [delayed(sleeps)(60, dask_key_name=f"sleeps-{i}") for i in range(4)]
            threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            try:
                delayed(sum)(values).compute()
            except KeyboardInterrupt:
                print("interrupted after", round(time.monotonic() - started - 2.0, 2))
            print("objects left", cluster._store.list(""))
            busy = cluster.statistics()
            print("cluster still works", delayed(abs)(-4).compute())
            root = cluster._store_root
            pids = cluster._platform.worker_pids()
        time.sleep(0.5)
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        print("root left", os.path.exists(root))
        """
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    seconds = float(result.stdout.split("interrupted after ")[1].split()[0])
    assert seconds < 1.0, result.stdout
    assert "objects left []" in result.stdout
    assert "cluster still works 4" in result.stdout
    assert "root left False" in result.stdout
    assert lines  # parsed


def test_ctrl_c_stops_a_compute_whose_invocations_are_throttled_without_end():
    # Every invocation is refused with a 429 and tried again forever: the client is inside
    # native code, waiting out throttles, when the signal comes.
    result = run_script(
        """
        import os, signal, threading, time
        from dask import delayed
        from dask_serverless import LocalCluster

        with LocalCluster(max_concurrency=2, chaos="throttle=1", chaos_seed=1) as cluster:
            values = [delayed(abs)(-i, dask_key_name=f"abs-{i}") for i in range(4)]
            threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            try:
                delayed(sum)(values).compute()
            except KeyboardInterrupt:
                print("interrupted after", round(time.monotonic() - started - 2.0, 2))
            print("objects left", cluster._store.list(""))
        """
    )
    assert result.returncode == 0, result.stderr
    seconds = float(result.stdout.split("interrupted after ")[1].split()[0])
    assert seconds < 1.0, result.stdout
    assert "objects left []" in result.stdout, result.stdout


def test_a_forked_child_gets_a_clear_error_and_exits():
    result = run_script(
        """
        import os, sys
        from dask import delayed
        from dask_serverless import LocalCluster, ServerlessError

        with LocalCluster(max_concurrency=1, memory_mb=512) as cluster:
            pid = os.fork()
            if pid == 0:
                try:
                    delayed(abs)(-1).compute()
                except ServerlessError as error:
                    print("child error:", error, flush=True)
                sys.exit(0)  # a normal exit: finalizers run, and must not hang
            _, status = os.waitpid(pid, 0)
            print("child exit", os.waitstatus_to_exitcode(status))
            print("parent still computes", delayed(abs)(-2).compute())
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "is a fork of it and cannot use its platform" in result.stdout
    assert "child exit 0" in result.stdout
    assert "parent still computes 2" in result.stdout


def test_a_multiprocessing_fork_child_exits_cleanly():
    result = run_script(
        """
        import multiprocessing
        from dask import delayed
        from dask_serverless import LocalCluster, ServerlessError

        def child(queue):
            try:
                delayed(abs)(-1).compute()
                queue.put("computed")
            except ServerlessError as error:
                queue.put(type(error).__name__)

        if __name__ == "__main__":
            with LocalCluster(max_concurrency=1, memory_mb=512):
                context = multiprocessing.get_context("fork")
                queue = context.Queue()
                process = context.Process(target=child, args=(queue,))
                process.start()
                print("child said", queue.get(timeout=30))
                process.join(timeout=30)
                print("child exit", process.exitcode)
        """,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "child said ServerlessError" in result.stdout
    assert "child exit 0" in result.stdout


def test_clusters_start_and_close_in_a_loop_after_importing_scipy():
    """Forks of worker processes never race in a threaded library's fork handlers."""
    result = run_script(
        """
        import time
        import dask.array, scipy.linalg, scipy.sparse
        from dask import delayed
        from dask_serverless import LocalCluster

        slowest = 0.0
        for attempt in range(20):
            started = time.monotonic()
            with LocalCluster(max_concurrency=2, memory_mb=512) as cluster:
                assert delayed(sum)([1, 2]).compute() == 3
            slowest = max(slowest, time.monotonic() - started)
        print("slowest", round(slowest, 2))
        """,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "failed to join thread" not in result.stderr
    assert "panicked" not in result.stderr
    # A stall was about 10 s; a start, one compute and a close take about a second.
    assert float(result.stdout.split("slowest ")[1]) < 8.0, result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be between 1 and"),
        ({"max_concurrency": 2.7}, "max_concurrency must be a whole number"),
        ({"max_concurrency": "2"}, "max_concurrency must be a whole number"),
        ({"memory_mb": 0}, "memory_mb must be between 128 and 10240"),
        ({"memory_mb": 10**7}, "memory_mb must be between 128 and 10240"),
        ({"timeout_s": 0}, "timeout_s must be above 0"),
        ({"timeout_s": float("nan")}, "timeout_s must be above 0"),
        ({"batches_per_function": -3}, "batches_per_function must be between 1 and"),
        ({"batches_per_function": 0}, "batches_per_function must be between 1 and"),
        ({"threads_per_function": 0}, "threads_per_function must be between 1 and"),
        (
            {"threads_per_function": "many"},
            'threads_per_function must be a positive whole number or "client"',
        ),
        ({"python": "/nonexistent/python3"}, "is not an executable file"),
        ({"store": "ftp://host/x"}, "is not supported by LocalCluster"),
    ],
)
def test_bad_arguments_fail_at_construction(arguments, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        LocalCluster(**arguments)
    assert isinstance(raised.value, ValueError)


def test_former_keyword_names_still_work_with_a_warning():
    with pytest.warns(FutureWarning, match="workers= is deprecated, use max_concurrency="):
        cluster = LocalCluster(workers=3, prewarm=False)
    assert cluster.max_concurrency == 3
    with pytest.warns(FutureWarning, match="clusters_per_worker= is deprecated"):
        cluster = LocalCluster(clusters_per_worker=2, threads_per_function=1, prewarm=False)
    assert cluster.batches_per_function == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'wokers'"):
        LocalCluster(wokers=3)


def test_a_cluster_on_redis(redis_address):
    with LocalCluster(max_concurrency=2, memory_mb=512, store=redis_address) as running:
        assert running._context["store"].startswith(redis_address)
        blocks = [delayed(np.arange)(n) for n in range(1, 40)]
        assert delayed(sum)([delayed(np.sum)(block) for block in blocks]).compute() == sum(
            n * (n - 1) // 2 for n in range(1, 40)
        )
        assert running._store.list("") == []


def test_every_exception_is_exported_and_in_one_family():
    classes = [
        getattr(dask_serverless, name) for name in dask_serverless.__all__ if name.endswith("Error")
    ]
    assert len(classes) >= 15
    for error_class in classes:
        assert issubclass(error_class, ServerlessError), error_class
        assert error_class.__module__ == "dask_serverless.errors"
    assert issubclass(dask_serverless.StoreUnavailableError, ConnectionError)
    assert issubclass(dask_serverless.GraphValidationError, ValueError)
    assert issubclass(dask_serverless.AwsPermissionError, PermissionError)


def test_the_native_module_raises_the_packages_own_classes(tmp_path):
    with pytest.raises(dask_serverless.GraphValidationError, match="cycle"):
        _core.Plan(["a", "b"], [[1], [0]], [], [0])
    with pytest.raises(ConfigurationError, match="parallelism must be at least 1"):
        _core.Plan(["a"], [[]], [], [0], parallelism=0)
    with pytest.raises(dask_serverless.StoreUnavailableError):
        store = _core.SharedMemoryStore.create(tmp_path / "store")
        store.destroy()
        os.makedirs(tmp_path / "elsewhere")
        _core.Store.open(f"shm://{tmp_path / 'store'}").list("")


def test_native_entry_points_check_their_input_without_panicking(cluster):
    import json

    plan = _core.Plan(["'a'", "'b'"], [[], [0]], [], [1])
    context = json.dumps(dict(cluster._context, run_id="run-validation"))
    with pytest.raises(ConfigurationError, match="silence_limit_s"):
        _core.ClientRun(context, plan, 10.0, float("nan"))
    with pytest.raises(ConfigurationError, match="invalid run context"):
        _core.ClientRun("{}", plan, 10.0, 20.0)
    run = _core.ClientRun(context, plan, 10.0, 20.0)
    with pytest.raises(ConfigurationError, match="batch 99 is not in the plan"):
        run.put_batch(99, b"")
    with pytest.raises(ConfigurationError, match="not an output"):
        run.fetch(0)
    with pytest.raises(ConfigurationError, match="timeout_s"):
        run.poll(-1.0)
    with pytest.raises(OverflowError):
        run.put_batch(-1, b"")
    run.cleanup()


def test_signal_module_is_untouched_after_a_compute(cluster):
    handler = signal.getsignal(signal.SIGINT)
    delayed(abs)(-1).compute(scheduler=cluster.get)
    assert signal.getsignal(signal.SIGINT) is handler


def _flaky(marker_path: str, failures: int) -> int:
    """Raises ``failures`` times (counted in a file: each attempt may run in another function),
    then returns the number of attempts."""
    from pathlib import Path

    marker = Path(marker_path)
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts <= failures:
        raise ValueError(f"flaky, attempt {attempts}")
    return attempts


def test_retries_reruns_a_task_that_raised_as_dask_does(cluster, tmp_path):
    marker = str(tmp_path / "attempts")
    value = delayed(_flaky)(marker, 2, dask_key_name="flaky")
    # Without `retries` the first exception reaches the caller, with its type and message.
    with pytest.raises(ValueError, match="flaky, attempt 1"):
        value.compute(scheduler=cluster.get)
    (tmp_path / "attempts").unlink()
    assert dask.compute(value, scheduler=cluster.get, retries=2) == (3,)
    (tmp_path / "attempts").unlink()
    with pytest.raises(ValueError, match="flaky, attempt 2"):
        dask.compute(value, scheduler=cluster.get, retries=1)
    with pytest.raises(ConfigurationError, match="retries"):
        dask.compute(value, scheduler=cluster.get, retries=-1)


def test_a_function_that_finds_the_lease_gone_stops_and_its_work_is_redone(chain_cluster):
    # A chain of 0.3 s tasks run by one invocation, which looks at the run's lease between
    # tasks at most once a second.
    value = delayed(0, name="start")
    for number in range(12):
        value = delayed(step)(value, 0.3, dask_key_name=f"lease-{number}")
    result: dict = {}

    def compute() -> None:
        try:
            result["value"] = value.compute(scheduler=chain_cluster.get)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            result["error"] = error

    computing = threading.Thread(target=compute)
    computing.start()
    store = chain_cluster._store
    deadline = time.monotonic() + 10
    leases: list[str] = []
    while not leases and time.monotonic() < deadline:
        leases = [key for key in store.list("") if key.endswith("/lease")]
        time.sleep(0.05)
    assert len(leases) == 1, leases
    time.sleep(1.0)
    # As if the client had ended the run: the function abandons its batch at the next check.
    store.delete(leases[0])
    computing.join(timeout=60)
    assert not computing.is_alive()
    assert "error" not in result, result.get("error")
    assert result["value"] == 12
    # The client renewed its lease and redid the abandoned work from the chain's head.
    assert chain_cluster.last_run["recoveries"] >= 1, chain_cluster.last_run


def _straggles_once(marker_path: str, number: int, seconds: float = 60) -> int:
    """A part that takes 0.2 s, but ``seconds`` more the first time it runs when it is number
    3: that function is a straggler, and a second run of the same task (a backup) is quick."""
    time.sleep(0.2)
    if number == 3:
        try:
            os.close(os.open(marker_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            time.sleep(seconds)
    return number * 10


def _slow_tail(value: int) -> int:
    time.sleep(5)
    return value + 1


def test_a_straggler_that_loses_to_its_backup_yields_and_is_billed(tmp_path):
    marker = str(tmp_path / "straggled")
    parts = [
        # The straggler wakes after 8 s, while the run goes on.
        delayed(_straggles_once)(marker, number, 8, dask_key_name=f"part-{number}")
        for number in range(4)
    ]
    total = delayed(sum)(parts, dask_key_name="total")
    # The run goes on after the straggler wakes: it finds the backup's done mark and yields.
    tail = delayed(_slow_tail)(total, dask_key_name="tail")
    with dask_serverless.LocalCluster(
        max_concurrency=4, batches_per_function=1, timeout_s=120
    ) as cluster:
        assert tail.compute(scheduler=cluster.get) == 61
        report = cluster.last_run
        assert report["backups"] == 1 and report["recoveries"] == 0, report
        invocations = report.invocations.set_index("invocation")
        losers = invocations[invocations["batches_abandoned"] > 0]
        assert len(losers) == 1, invocations
        loser = losers.iloc[0]
        # It ran its task (8 s) before it found the batch done elsewhere; its task is counted
        # once, for the backup.
        assert loser["tasks"] == 0 and loser["duration_s"] >= 8, loser
        tasks = report.tasks.set_index("key")
        assert tasks.loc["part-3", "invocation"] != losers.index[0]
        assert tasks.loc["part-3", "duration_s"] < 2
        phases = report.phases
        abandoned = phases[phases["phase"] == "abandoned"]
        assert list(abandoned["invocation"]) == [losers.index[0]], phases
        # The loser is in the bill.
        check_bill_by_hand(report, cluster.memory_mb)
        assert report.cost.details["billed_ms"] >= 8000 + 5000


def test_a_straggler_gets_a_backup_the_first_to_finish_wins_and_nothing_is_left(tmp_path):
    marker = str(tmp_path / "straggled")
    parts = [
        delayed(_straggles_once)(marker, number, dask_key_name=f"part-{number}")
        for number in range(4)
    ]
    total = delayed(sum)(parts, dask_key_name="total")
    with dask_serverless.LocalCluster(
        max_concurrency=4, batches_per_function=1, timeout_s=120
    ) as cluster:
        started = time.monotonic()
        assert total.compute(scheduler=cluster.get) == 60
        elapsed = time.monotonic() - started
        # The backup starts once the straggler ran 5 s (more than three times its siblings'
        # 0.2 s, and at least five seconds): the compute does not wait for the 60 s.
        assert elapsed < 15, elapsed
        assert cluster.last_run["backups"] == 1, cluster.last_run
        assert cluster.last_run["recoveries"] == 0, cluster.last_run
        # The straggler, still sleeping, was stopped, and the run's objects are gone.
        assert cluster._store.list("") == []
        # The cluster computes on.
        assert total.compute(scheduler=cluster.get) == 60
