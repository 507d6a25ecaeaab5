"""``LocalCluster``: the embedded Lambda-compatible platform on this machine.

``with LocalCluster():`` starts, in this process, a local platform that speaks the AWS Lambda
Invoke API to callers and the Lambda Runtime API to its worker processes (warm Python processes
running this package's handler through the AWS runtime interface client), a shared-memory store
and a result channel. Inside the block every Dask compute runs on it; on exit the previous
scheduler is restored and every worker process, shared-memory object and queue is gone.

If the client dies instead (killed with SIGKILL, by the out-of-memory killer...), its worker
processes and whatever their tasks started die with it: each worker's process group has a
keeper that kills the group when the client's process is gone. What it kept on disk, its
shared-memory store (``/dev/shm/dask-serverless-<id>``) and the platform's directory
(``$TMPDIR/dask-serverless-local-platform-*``), carries an owner mark that only a live client
holds; the next ``LocalCluster`` start removes what dead clients left, never what a live client
(of this or another process or user) uses. ``dask-serverless cleanup --local`` does the same
from the command line, and ``dask_serverless.cluster.cleanup()`` from Python.

Every function of a cluster hashes strings the same way (``PYTHONHASHSEED`` is pinned: the
client's own value when it sets one, otherwise a value fixed per cluster), as Dask partitions
by ``hash()``; Dask's ``processes`` scheduler pins its workers' seed the same way.
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
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from dask_serverless import _core
from dask_serverless._base import ServerlessCluster, hash_seed
from dask_serverless._validate import (
    check_executable,
    check_integer,
    check_number,
    renamed_keywords,
)
from dask_serverless.errors import ConfigurationError

FUNCTION_NAME = "dask-serverless-executor"
HANDLER = "dask_serverless.handler.handler"
#: Lambda's range of memory sizes, which the local platform enforces as well.
MEMORY_RANGE_MB = (128, 10_240)
#: Lambda's longest timeout.
MAX_TIMEOUT_S = 900.0
#: Most functions the local platform runs at once.
MAX_CONCURRENCY = 1024
#: Stores a LocalCluster can use besides its own shared memory.
STORE_SCHEMES = ("redis", "rediss", "s3")


def _default_memory_mb(functions: int) -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 3008
    return max(512, min(MEMORY_RANGE_MB[1], int(total * 0.8 / max(functions, 1))))


def _shared_memory_root() -> str:
    # The name is one that a cleanup of dead clients' leftovers recognizes: 12 hex digits.
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(base, f"dask-serverless-{uuid.uuid4().hex[:12]}")


def cleanup(dry_run: bool = False) -> list[str]:
    """Remove what dead local clients left on this machine: shared-memory stores and local
    platform directories whose owner is gone, never those of a live client.

    Returns one line per directory: ``removed <path> (<what>; <why>)``, ``would remove ...``
    with ``dry_run``, or ``could not remove ...: <error>``. ``LocalCluster`` does this as it
    starts; ``dask-serverless cleanup --local`` is the same from the command line.
    """
    lines = []
    for leftover in _core.remove_local_leftovers(dry_run=dry_run):
        if leftover.error is not None:
            lines.append(f"could not remove {leftover}: {leftover.error}")
        elif dry_run:
            lines.append(f"would remove {leftover}")
        else:
            lines.append(f"removed {leftover}")
    return lines


class LocalCluster(ServerlessCluster):
    """Run Dask computations on a local serverless platform.

    Parameters
    ----------
    max_concurrency:
        At most this many functions run at once (default: CPU count).
    memory_mb:
        Memory size of each function; a function that exceeds it is stopped and the compute
        fails with an error naming the task and the size.
    timeout_s:
        Longest one invocation may run (Lambda's own limit is 900 s). An invocation may run
        many tasks in a row (several batches), so this bounds their sum.
    batches_per_function:
        How finely the planner cuts the graph: about ``max_concurrency *
        batches_per_function`` batches of tasks, each run by one invocation.
    threads_per_function:
        Threads of the numeric libraries (OpenBLAS, MKL, OpenMP) in each function, as a
        function on Lambda has its own vCPUs. Default: the machine's cores shared among the
        functions (at least 1), or the client's ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/
        ``MKL_NUM_THREADS`` when set. ``"client"``: exactly the client's threading, so that
        BLAS-heavy results (matmul, SVD) are bit for bit those of Dask's schedulers in this
        process; other thread counts sum in another order and differ in the last bits.
    python:
        Interpreter of the worker processes that run the functions (default: this one).
    prewarm:
        Start the worker processes at once instead of at the first compute.
    store:
        ``None`` (default) for a shared-memory store private to the cluster, or the address of
        a store the functions share: ``redis://host:port/db`` or ``s3://bucket?region=...``.
        The cluster keeps its objects under a prefix of its own and deletes them.
    chaos:
        A testing aid: faults to inject, e.g. ``"kill=0.05,duplicate=0.05,throttle=0.2,
        straggle=0.01"`` (functions killed, invocations delivered twice or throttled,
        stragglers ten times slower; also ``store``, ``latency`` and ``cold``). The engine must
        still return Dask's results; see ``docs/reliability.md``, "The chaos suite".
    chaos_seed:
        The seed of the faults: the same seed and computes inject the same faults.
    verbose:
        Print what the functions print (their workers' standard output and error) on this
        process's standard error as it comes, each line prefixed by function and worker.
        Either way it is kept per invocation: ``cluster.get_logs()`` after a compute.

    ``workers``, ``clusters_per_worker`` and ``threads_per_worker`` are the former names of
    ``max_concurrency``, ``batches_per_function`` and ``threads_per_function``; they still
    work, with a ``FutureWarning``.
    """

    max_concurrency: int

    def __init__(
        self,
        max_concurrency: int | None = None,
        memory_mb: int | None = None,
        timeout_s: float = 900.0,
        batches_per_function: int = 4,
        threads_per_function: int | str | None = None,
        python: str | None = None,
        prewarm: bool = True,
        store: str | None = None,
        chaos: str | None = None,
        chaos_seed: int = 0,
        verbose: bool = False,
        **former_names: Any,
    ) -> None:
        renamed = renamed_keywords(
            former_names,
            {
                "workers": "max_concurrency",
                "clusters_per_worker": "batches_per_function",
                "threads_per_worker": "threads_per_function",
            },
        )
        max_concurrency = renamed.get("max_concurrency", max_concurrency)
        batches_per_function = renamed.get("batches_per_function", batches_per_function)
        threads_per_function = renamed.get("threads_per_function", threads_per_function)
        if max_concurrency is None:
            max_concurrency = os.cpu_count() or 1
        self.max_concurrency = check_integer("max_concurrency", max_concurrency, 1, MAX_CONCURRENCY)
        if memory_mb is None:
            memory_mb = _default_memory_mb(self.max_concurrency)
        self.memory_mb = check_integer("memory_mb", memory_mb, *MEMORY_RANGE_MB)
        self.timeout_s = check_number("timeout_s", timeout_s, 0.0, MAX_TIMEOUT_S, exclusive=True)
        self.batches_per_function = check_integer(
            "batches_per_function", batches_per_function, 1, 1000
        )
        self.threads_per_function = _threads_per_function(
            threads_per_function, self.max_concurrency
        )
        self.python = check_executable("python", python or sys.executable)
        self.prewarm = bool(prewarm)
        self.verbose = bool(verbose)
        self.store_address = _store_address(store)
        super().__init__(chaos=chaos, chaos_seed=chaos_seed)
        self._platform: Any = None
        self._store_root: str | None = None
        self._finalizer: Any = None

    @property
    def parallelism(self) -> int:
        """Functions the planner cuts the graph for: the concurrency limit."""
        return self.max_concurrency

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        if self._platform is not None:
            return self
        # What dead clients left (their owners are gone); a failure here is no reason not to start.
        _core.remove_local_leftovers()
        store: Any
        if self.store_address is None:
            own_root = _shared_memory_root()
            store = _core.SharedMemoryStore.create(own_root)
            address = f"shm://{own_root}"
            root: str | None = own_root
        else:
            root = None
            address = self.store_address
            store = _core.Store.open(address)
        try:
            platform = _core.LocalPlatform(verbose=self.verbose)
        except BaseException:
            _destroy_store(store)
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
                concurrency=self.max_concurrency,
                on_failure_queue=queue,
                working_directory=os.getcwd(),
            )
        except BaseException:
            platform.close()
            _destroy_store(store)
            raise
        self._platform, self._store, self._store_root = platform, store, root
        self._context = {
            "function": FUNCTION_NAME,
            "store": address,
            "platform": {
                "kind": "local",
                "invoke_endpoint": platform.endpoint,
                "queue_endpoint": platform.endpoint,
                "queue": queue,
            },
        }
        self._finalizer = weakref.finalize(self, _release, platform, store, root)
        self._register_started()
        if self.prewarm:
            for _ in range(self.max_concurrency):
                platform.invoke_event(FUNCTION_NAME, json.dumps({"ping": True}))
        return self

    def close(self) -> None:
        """Stop every worker and delete every object; safe to call twice."""
        self._restore_scheduler()
        self._unregister_started()
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._platform = self._store = self._context = None

    def _stop_functions(self) -> None:
        if self._platform is not None:
            self._platform.stop_invocations(FUNCTION_NAME)

    def _invocation_logs(self, since: float) -> list[Any]:
        return self._platform.invocation_logs(FUNCTION_NAME, since)

    def _forget_after_fork(self) -> None:
        # The platform's threads and workers belong to the parent: never close them from here.
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._platform = self._store = None

    def statistics(self) -> dict:
        """Invocations, cold starts, throttles and workers of the local platform."""
        self._require_running()
        return self._platform.statistics()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"LocalCluster(max_concurrency={self.max_concurrency}, memory_mb={self.memory_mb}, "
            f"timeout_s={self.timeout_s:g}, threads_per_function={self.threads_per_function!r}, "
            f"{state})"
        )

    def _display_settings(self) -> list[tuple[str, str]]:
        return [
            ("max_concurrency", str(self.max_concurrency)),
            *super()._display_settings(),
            ("batches_per_function", str(self.batches_per_function)),
            ("threads_per_function", str(self.threads_per_function)),
            ("store", self.store_address or "shared memory (private to the cluster)"),
        ]

    def _worker_environment(self) -> dict[str, str]:
        paths = [path for path in sys.path if path and os.path.isdir(path)]
        environment = {
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONHASHSEED": hash_seed(),
            # What a task prints reaches the platform at once, so it is kept with the
            # invocation that printed it (a pipe would otherwise hold it until a buffer fills).
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("PATH", "HOME", "LANG", "DASK_SERVERLESS_CHAOS_LOG", *THREAD_VARIABLES):
            if name in os.environ:
                environment[name] = os.environ[name]
        if self.threads_per_function != "client":
            for name in THREAD_VARIABLES:
                environment[name] = str(self.threads_per_function)
        return environment


# What numeric libraries read for their thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_per_function(requested: int | str | None, functions: int) -> int | str:
    if requested == "client":
        return "client"
    if requested is None:
        for name in THREAD_VARIABLES:
            value = os.environ.get(name, "")
            if value.isdigit() and int(value) > 0:
                return int(value)
        return max(1, (os.cpu_count() or 1) // functions)
    if isinstance(requested, str):
        raise ConfigurationError(
            f'threads_per_function must be a positive whole number or "client", not {requested!r}'
        )
    return check_integer("threads_per_function", requested, 1, 1024)


def _store_address(store: str | None) -> str | None:
    """The address functions use, under a prefix private to this cluster."""
    if store is None:
        return None
    if not isinstance(store, str):
        raise ConfigurationError(
            f"store must be an address such as 'redis://host:6379/0', not {store!r}"
        )
    parsed = urlparse(store)
    if parsed.scheme not in STORE_SCHEMES:
        raise ConfigurationError(
            f"store {store!r} is not supported by LocalCluster: use None (shared memory), "
            "'redis://host:port/db' or 's3://bucket?region=...'"
        )
    query = dict(parse_qsl(parsed.query))
    prefix = query.get("prefix", "")
    query["prefix"] = f"{prefix}dask-serverless-{uuid.uuid4().hex[:12]}/"
    return urlunparse(parsed._replace(query=urlencode(query)))


def _destroy_store(store: Any) -> None:
    """Deletes the cluster's objects: its whole shared memory, or its prefix of a shared store."""
    destroy = getattr(store, "destroy", None)
    if destroy is not None:
        destroy()
        return
    for prefix in sorted({key.split("/", 1)[0] for key in store.list("")}):
        store.delete_prefix(f"{prefix}/")


def _release(platform: Any, store: Any, root: str | None) -> None:
    try:
        platform.close()
    finally:
        try:
            _destroy_store(store)
        finally:
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
