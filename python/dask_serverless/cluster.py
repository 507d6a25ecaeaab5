"""``LocalCluster``: the embedded Lambda-compatible platform on this machine.

``with LocalCluster():`` starts, in this process, a local platform that speaks the AWS Lambda
Invoke API to callers and the Lambda Runtime API to its workers (warm Python processes running
this package's handler through the AWS runtime interface client), a shared-memory store and a
result channel. Inside the block every Dask compute runs on it; on exit the previous scheduler
is restored and every worker process, shared-memory object and queue is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
import weakref
from typing import Any

from dask_serverless import _core
from dask_serverless._base import ServerlessCluster

FUNCTION_NAME = "dask-serverless-executor"
HANDLER = "dask_serverless.handler.handler"


def _default_memory_mb(workers: int) -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 3008
    return max(512, min(3008, int(total * 0.8 / max(workers, 1))))


def _shared_memory_root() -> str:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(base, f"dask-serverless-{uuid.uuid4().hex[:12]}")


class LocalCluster(ServerlessCluster):
    """Run Dask computations on a local serverless platform.

    Parameters
    ----------
    workers:
        Concurrency limit: at most this many functions run at once (default: CPU count).
    memory_mb:
        Memory size of each function; a function that exceeds it is stopped and the compute
        fails with an error naming the task and the size.
    timeout_s:
        Longest a function may run (Lambda's own limit is 900 s).
    clusters_per_worker:
        How finely the planner cuts the graph: about ``workers * clusters_per_worker``
        clusters of tasks, each run by one invocation.
    threads_per_worker:
        Threads of the numeric libraries (OpenBLAS, MKL, OpenMP) in each function, as a
        function on Lambda has its own vCPUs. Default: the machine's cores shared among the
        workers (at least 1), or the client's ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/
        ``MKL_NUM_THREADS`` when set. ``"client"``: exactly the client's threading, so that
        BLAS-heavy results (matmul, SVD) are bit for bit those of Dask's schedulers in this
        process; other thread counts sum in another order and differ in the last bits.
    python:
        Interpreter of the worker processes (default: this one).
    prewarm:
        Start the worker processes at once instead of at the first compute.
    """

    def __init__(
        self,
        workers: int | None = None,
        memory_mb: int | None = None,
        timeout_s: float = 900.0,
        clusters_per_worker: int = 4,
        threads_per_worker: int | str | None = None,
        python: str | None = None,
        prewarm: bool = True,
    ) -> None:
        self.workers = int(workers or os.cpu_count() or 1)
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.memory_mb = int(memory_mb or _default_memory_mb(self.workers))
        if self.memory_mb < 128:
            raise ValueError(f"memory_mb must be at least 128 (Lambda's minimum), not {memory_mb}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.clusters_per_worker = int(clusters_per_worker)
        self.threads_per_worker = _threads_per_worker(threads_per_worker, self.workers)
        self.python = python or sys.executable
        self.prewarm = prewarm
        super().__init__()
        self._platform: Any = None
        self._store_root: str | None = None
        self._finalizer: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        if self._platform is not None:
            return self
        root = _shared_memory_root()
        store = _core.SharedMemoryStore.create(root)
        try:
            platform = _core.LocalPlatform()
        except BaseException:
            store.destroy()
            raise
        queue = f"results-{uuid.uuid4().hex[:12]}"
        try:
            platform.create_queue(queue)
            platform.create_function(
                name=FUNCTION_NAME,
                command=[self.python, "-m", "awslambdaric", HANDLER],
                environment=list(self._worker_environment().items()),
                memory_mb=self.memory_mb,
                timeout_s=self.timeout_s,
                concurrency=self.workers,
                on_failure_queue=queue,
                working_directory=os.getcwd(),
            )
        except BaseException:
            platform.close()
            store.destroy()
            raise
        self._platform, self._store, self._store_root = platform, store, root
        self._context = {
            "function": FUNCTION_NAME,
            "store": f"shm://{root}",
            "platform": {
                "kind": "local",
                "invoke_endpoint": platform.endpoint,
                "queue_endpoint": platform.endpoint,
                "queue": queue,
            },
        }
        self._finalizer = weakref.finalize(self, _release, platform, store, root)
        if self.prewarm:
            for _ in range(self.workers):
                platform.invoke_event(FUNCTION_NAME, json.dumps({"ping": True}))
        return self

    def close(self) -> None:
        """Stop every worker and delete every object; safe to call twice."""
        self._restore_scheduler()
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._platform = self._store = self._context = None

    def statistics(self) -> dict:
        """Invocations, cold starts, throttles and workers of the local platform."""
        self._require_running()
        return self._platform.statistics()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"LocalCluster(workers={self.workers}, memory_mb={self.memory_mb}, "
            f"timeout_s={self.timeout_s:g}, threads_per_worker={self.threads_per_worker!r}, "
            f"{state})"
        )

    def _worker_environment(self) -> dict[str, str]:
        paths = [path for path in sys.path if path and os.path.isdir(path)]
        environment = {"PYTHONPATH": os.pathsep.join(paths)}
        for name in ("PATH", "HOME", "LANG", *THREAD_VARIABLES):
            if name in os.environ:
                environment[name] = os.environ[name]
        if self.threads_per_worker != "client":
            for name in THREAD_VARIABLES:
                environment[name] = str(self.threads_per_worker)
        return environment


# What numeric libraries read for their thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_per_worker(requested: int | str | None, workers: int) -> int | str:
    if requested == "client":
        return "client"
    if requested is None:
        for name in THREAD_VARIABLES:
            value = os.environ.get(name, "")
            if value.isdigit() and int(value) > 0:
                return int(value)
        return max(1, (os.cpu_count() or 1) // workers)
    if isinstance(requested, str) or int(requested) < 1:
        raise ValueError(
            f'threads_per_worker must be a positive number or "client", not {requested!r}'
        )
    return int(requested)


def _release(platform: Any, store: Any, root: str) -> None:
    try:
        platform.close()
    finally:
        try:
            store.destroy()
        finally:
            shutil.rmtree(root, ignore_errors=True)
