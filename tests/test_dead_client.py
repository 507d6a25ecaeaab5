"""A client killed with SIGKILL during a compute leaves nothing behind.

A client process runs a ``LocalCluster`` compute whose task starts ``sleep 300`` and then
waits; the task writes down the process ids (its worker, the ``sleep``, the worker's process
group, led by the worker's keeper) before the client is killed with SIGKILL. Then:

- within 5 s no process of it is alive: not the worker, not the ``sleep``, not the keeper,
  nothing else in the group;
- the next ``LocalCluster`` start removes its shared-memory store and its platform directory,
  while those of a second client, alive all along, stay and keep working.

``make test`` runs the scenario 3 times; ``make dead-client`` runs it 20 times
(``DASK_SERVERLESS_DEAD_CLIENT_RUNS``), see docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dask_serverless import LocalCluster
from dask_serverless.cluster import cleanup

RUNS = int(os.environ.get("DASK_SERVERLESS_DEAD_CLIENT_RUNS", "3"))
#: How long after the SIGKILL every process of the client must be gone.
GRACE_S = 5.0
#: How long a client may take to start and reach its task (interpreter, imports, cold start).
START_S = 60.0

# The task records its processes, then keeps the compute running until the client is killed.
DOOMED_CLIENT = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    import dask
    from dask_serverless import LocalCluster

    report = sys.argv[1]

    def write(path, value):
        with open(path + ".partial", "w") as output:
            json.dump(value, output)
        os.rename(path + ".partial", path)

    def task(_):
        sleeper = subprocess.Popen(["sleep", "300"])
        write(report + ".task", {
            "worker": os.getpid(),
            "sleeper": sleeper.pid,
            "group": os.getpgid(0),
            "platform_directory": os.path.dirname(os.environ["DASK_SERVERLESS_PROGRESS_PATH"]),
        })
        time.sleep(300)

    with LocalCluster(max_concurrency=1, prewarm=False, timeout_s=600) as cluster:
        write(report + ".client", {"store_root": cluster._store_root})
        dask.delayed(task)(1).compute()
    """
)

# A client that stays alive: computes, reports its directories, and computes again when told.
LIVE_CLIENT = textwrap.dedent(
    """
    import json, os, sys
    import dask
    from dask_serverless import LocalCluster

    def platform_directory(_):
        return os.path.dirname(os.environ["DASK_SERVERLESS_PROGRESS_PATH"])

    with LocalCluster(max_concurrency=1, prewarm=False) as cluster:
        directory = dask.delayed(platform_directory)(1).compute()
        print(json.dumps({"store_root": cluster._store_root, "platform_directory": directory}),
              flush=True)
        sys.stdin.readline()
        print(json.dumps({"sum": dask.delayed(sum)([1, 2, 3]).compute()}), flush=True)
    """
)


def _is_alive(pid: int) -> bool:
    """Running, or stopped; a zombie is dead (it only waits for its parent to read its status)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _live_members(group: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _wait_for_file(path: Path, process: subprocess.Popen, what: str) -> dict:
    deadline = time.monotonic() + START_S
    while not path.exists():
        if process.poll() is not None:
            _, errors = process.communicate()
            pytest.fail(f"{what} exited with {process.returncode} first:\n{errors}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{what}: {path.name} not written within {START_S:.0f} s")
        time.sleep(0.02)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def live_client() -> Iterator[dict]:
    """A second client, alive during every run: its directories must survive every cleanup."""
    process = subprocess.Popen(
        [sys.executable, "-c", LIVE_CLIENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    if not line:
        _, errors = process.communicate(timeout=30)
        pytest.fail(f"the live client failed to start:\n{errors}")
    directories = json.loads(line)
    yield directories
    # Still working after every cleanup: it computes once more, then closes its cluster.
    process.stdin.write("compute\n")
    process.stdin.flush()
    answer = process.stdout.readline()
    process.wait(timeout=60)
    assert json.loads(answer) == {"sum": 6}, process.stderr.read() if process.stderr else ""
    assert process.returncode == 0
    assert not os.path.exists(directories["store_root"])
    assert not os.path.exists(directories["platform_directory"])


@pytest.mark.parametrize("run", range(RUNS))
def test_a_client_killed_during_a_compute_leaves_nothing_behind(run, live_client, tmp_path):
    report = tmp_path / "report"
    client = subprocess.Popen(
        [sys.executable, "-c", DOOMED_CLIENT, str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        task = _wait_for_file(Path(f"{report}.task"), client, "the doomed client")
        store_root = json.loads(Path(f"{report}.client").read_text())["store_root"]
    except BaseException:
        client.kill()
        client.wait()
        raise
    worker, sleeper, group = task["worker"], task["sleeper"], task["group"]
    platform_directory = task["platform_directory"]
    # The keeper leads the worker's group: a process of its own, besides worker and sleeper.
    assert group not in (worker, sleeper, client.pid)
    processes = {"worker": worker, "sleep": sleeper, "keeper": group}
    assert all(_is_alive(pid) for pid in processes.values()), processes
    assert sorted(_live_members(group)) == sorted(processes.values())
    for directory in (store_root, platform_directory):
        assert os.path.exists(os.path.join(directory, "owner.lock")), directory

    client.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    client.wait()
    while any(_is_alive(pid) for pid in processes.values()) or _live_members(group):
        alive = {name: pid for name, pid in processes.items() if _is_alive(pid)}
        assert time.monotonic() - killed < GRACE_S, (
            f"alive {GRACE_S:.0f} s after the client was killed: {alive}, "
            f"group {group}: {_live_members(group)}"
        )
        time.sleep(0.01)
    gone_after = time.monotonic() - killed
    print(f"run {run + 1}: worker, sleep and keeper gone {gone_after:.3f} s after the SIGKILL")

    # The killed client removed nothing; the next LocalCluster start does.
    assert os.path.isdir(store_root) and os.path.isdir(platform_directory)
    with LocalCluster(max_concurrency=1, prewarm=False):
        pass
    assert not os.path.exists(store_root)
    assert not os.path.exists(platform_directory)
    # Never what a live client uses.
    assert os.path.isdir(live_client["store_root"])
    assert os.path.isdir(live_client["platform_directory"])


def test_cleanup_lists_and_removes_only_what_dead_owners_left(live_client, tmp_path):
    report = tmp_path / "report"
    client = subprocess.Popen(
        [sys.executable, "-c", DOOMED_CLIENT, str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        task = _wait_for_file(Path(f"{report}.task"), client, "the doomed client")
        store_root = json.loads(Path(f"{report}.client").read_text())["store_root"]
    finally:
        client.kill()
        client.wait()
    platform_directory = task["platform_directory"]
    expected = {
        store_root: f"shared-memory store; its owner, process {client.pid}, is gone",
        platform_directory: f"local platform directory; its owner, process {client.pid}, is gone",
    }

    listed = cleanup(dry_run=True)
    for path, why in expected.items():
        assert f"would remove {path} ({why})" in listed
    assert not any(live_client["store_root"] in line for line in listed)
    assert os.path.isdir(store_root) and os.path.isdir(platform_directory)

    removed = cleanup()
    for path, why in expected.items():
        assert f"removed {path} ({why})" in removed
        assert not os.path.exists(path)
    assert os.path.isdir(live_client["store_root"])
    assert os.path.isdir(live_client["platform_directory"])
