"""What every cluster shares: the Dask scheduler ``get``, the run lifecycle and the switch of
Dask's default scheduler inside ``with``.

A subclass provides ``start()``, ``close()``, ``_stop_functions()`` and ``_invocation_logs()``
(what the functions printed, per invocation, from a moment on), sets ``_context``
(where functions find the platform and the store, as the native ``RunContext`` JSON minus the
run id) and ``_store`` (a native store handle used to delete the objects of runs that did not
stop in time).

How a run ends:

* **succeeded**: its objects are deleted; the loser of a straggler and its backup that still
  runs is stopped first, as below;
* **failed** (a task raised, a function died): clusters are kept from starting (their specs are
  deleted), running ones get ``FAILED_DRAIN_SECONDS`` to report, then whatever still runs is
  stopped (``_stop_functions``: the local platform kills its workers, Lambda functions find the
  run gone at their next cluster) and the objects are deleted. A store that fails during this
  cleanup adds a note to the original error; it never replaces it;
* **interrupted** (``Ctrl-C``): the same without waiting: functions are stopped at once.

Runs that could not be stopped in time are swept again after later computes and when the
cluster closes.

A cluster belongs to the process that started it: a process forked from it (``os.fork()``,
``multiprocessing`` with the ``fork`` start method) gets a clear error if it computes, and its
exit does not touch the parent's platform.
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
from typing import Any

import dask
import dask.local

from dask_serverless import _core
from dask_serverless._scheduler import compute
from dask_serverless.errors import ServerlessError
from dask_serverless.report import Pricing, RunLogs, RunReport

#: How long a failed compute waits for its other running clusters before stopping them.
FAILED_DRAIN_SECONDS = 1.0
#: How long an interrupted compute waits for functions it stopped to report.
STOPPED_DRAIN_SECONDS = 0.5

# Whether this thread is inside a compute of a cluster.
_computing = threading.local()

# Clusters started by this process, told when the process forks.
_started: set[ServerlessCluster] = set()
_started_lock = threading.Lock()


class ServerlessCluster:
    """Base of ``LocalCluster`` and ``LambdaCluster``."""

    batches_per_function: int
    timeout_s: float
    #: Functions the platform runs at once at most, when known.
    max_concurrency: int | None
    memory_mb: int
    #: How runs are priced (``last_run.cost``); ``None``: from the cluster's own settings.
    pricing: Pricing | None = None

    @property
    def parallelism(self) -> int:
        """How many functions the planner cuts a graph for."""
        raise NotImplementedError

    def __init__(self, chaos: str | None = None, chaos_seed: int = 0) -> None:
        #: Faults to inject (a testing aid): the spec and the seed, checked here.
        self._chaos: tuple[str, int] | None = None
        if chaos is not None:
            if not isinstance(chaos_seed, int) or chaos_seed < 0:
                raise ValueError(f"chaos_seed must be a whole number >= 0, not {chaos_seed!r}")
            _core.chaos_setting(chaos, chaos_seed, 0)
            self._chaos = (chaos, chaos_seed)
        self._chaos_runs = 0
        self._context: dict | None = None
        self._store: Any = None
        self._config: Any = None
        self._lock = threading.Lock()
        self._stale_runs: set[str] = set()
        self._owner_pid = os.getpid()
        #: The report of the latest compute (:class:`~dask_serverless.report.RunReport`): as a
        #: mapping, seconds per phase (ingest, plan, upload, run, fetch, total; ``started``
        #: from the call to the started run), tasks, batches, invocations, store operations and
        #: bytes; with ``.tasks``, ``.invocations`` and ``.cost``.
        self.last_run: RunReport | None = None
        #: When the latest compute started (Unix seconds): its invocations are those since.
        self._last_compute_started: float | None = None

    def start(self) -> ServerlessCluster:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _pricing(self) -> Pricing:
        """How this cluster's runs are priced (see :mod:`dask_serverless.report`)."""
        if self.pricing is not None:
            return self.pricing
        store = str((self._context or {}).get("store", ""))
        return Pricing(
            memory_mb=self.memory_mb,
            store="redis" if store.startswith(("redis://", "rediss://")) else "s3",
            **self._pricing_place(),
        )

    def _pricing_place(self) -> dict[str, Any]:
        """Region, architecture and whether runs happen on AWS."""
        return {}

    def _stop_functions(self) -> None:
        """Stops every function of the current run (it is the only one)."""
        raise NotImplementedError

    def _display_settings(self) -> list[tuple[str, str]]:
        """The settings worth showing, as (name, value) pairs."""
        return [("memory_mb", str(self.memory_mb)), ("timeout_s", f"{self.timeout_s:g}")]

    def _repr_html_(self) -> str:
        """The cluster's state, settings and latest compute, as an HTML fragment (Jupyter)."""
        rows = [("state", "running" if self.running else "stopped"), *self._display_settings()]
        last = self.last_run
        if last is not None:
            state = "succeeded" if last.succeeded else "failed"
            rows.append(
                (
                    "last compute",
                    f"{state} in {last.total_seconds:.3f} s: {last.get('tasks', 0)} tasks, "
                    f"{last.get('invocations', 0)} invocations",
                )
            )
            try:
                rows.append(("last compute's cost", f"${last.cost.total:.6f}"))
            except ValueError as error:  # a region or architecture the price table lacks
                rows.append(("last compute's cost", f"unknown ({error})"))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        return (
            f"<div class='dask-serverless-cluster'><strong>{type(self).__name__}</strong>"
            f"<table>{body}</table></div>"
        )

    def _invocation_logs(self, since: float) -> list[Any]:
        """What the functions printed in the invocations since ``since`` (Unix seconds), as
        native ``InvocationLog`` records in the order they started."""
        raise NotImplementedError

    def get_logs(self) -> RunLogs:
        """What the functions printed (standard output and error) during the latest compute,
        per invocation: a mapping from invocation id (as in ``last_run.invocations``) to its
        text, in the order the invocations started. Empty before the first compute.

        On the local platform each invocation keeps its last 64 KiB (its workers' output is
        not printed in this process unless the cluster is ``verbose``); on AWS Lambda the text
        comes from the function's CloudWatch Logs group, which the cluster deletes when it
        closes: read the logs inside the ``with`` block."""
        self._require_running()
        since = self._last_compute_started
        if since is None:
            return RunLogs([])
        # Lambda's clock may be a little behind this one: the platform reads a little earlier,
        # and an invocation that started before `since` is the compute's only if it reported.
        reported = self.last_run._invocation_ids() if self.last_run is not None else set()
        return RunLogs(
            record
            for record in self._invocation_logs(since)
            if record.started >= since or record.invocation_id in reported
        )

    @property
    def running(self) -> bool:
        return self._context is not None

    def __enter__(self):
        self.start()
        try:
            # Shuffles built inside the block go through tasks, which scale across functions
            # (a disk shuffle built elsewhere is rewritten at compute time, see _shuffle).
            self._config = dask.config.set(
                {"scheduler": self.get, "dataframe.shuffle.method": "tasks"}
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __copy__(self) -> ServerlessCluster:
        # A cluster is a handle on running resources: a copy is the same cluster (libraries
        # snapshot dask.config, whose scheduler is the cluster's `get`).
        return self

    def __deepcopy__(self, memo: dict) -> ServerlessCluster:
        return self

    def __reduce__(self):
        # A graph may hold the cluster (a task closing over `cluster.get`, a collection that
        # remembers its scheduler). In a function it stands for "compute here".
        return (_InFunctionScheduler, ())

    def _register_started(self) -> None:
        self._owner_pid = os.getpid()
        with _started_lock:
            _started.add(self)

    def _unregister_started(self) -> None:
        with _started_lock:
            _started.discard(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: the platform, store and threads are the parent's."""
        raise NotImplementedError

    def _restore_scheduler(self) -> None:
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """A Dask scheduler ``get``: pass ``scheduler=cluster.get`` to ``compute``.

        Computes of other threads wait for the running one (a cluster runs one compute at a
        time). A compute started *inside* a running one in the same thread (from a callback,
        or while a graph is being built) runs on Dask's synchronous scheduler in this process,
        as a task's own compute does in a function: it never waits for itself."""
        self._require_running()
        if getattr(_computing, "active", False):
            return dask.local.get_sync(dsk, keys, **kwargs)
        with self._lock:
            _computing.active = True
            self._last_compute_started = time.time()
            try:
                return compute(self, dsk, keys, **kwargs)
            finally:
                _computing.active = False

    def _start_run(self, run_id: str, plan: Any, task_retries: int = 0) -> Any:
        assert self._context is not None, "a run starts on a running cluster"
        context = dict(self._context, run_id=run_id)
        if self._chaos is not None:
            spec, seed = self._chaos
            context["chaos"] = _core.chaos_setting(spec, seed, self._chaos_runs)
            self._chaos_runs += 1
        return _core.ClientRun(
            json.dumps(context),
            plan,
            self.timeout_s,
            self.timeout_s + 15.0,
            task_retries=task_retries,
            concurrency_limit=self.max_concurrency,
        )

    def _end_run(self, run: Any, outcome: str) -> str | None:
        """Stops what still runs of ``run`` and deletes its objects (see the module doc).

        After a failure or an interruption this never raises: a cleanup that fails is
        returned as a note for the run's own error."""
        try:
            # A succeeded run may still have the loser of a straggler and its backup running.
            if outcome != "succeeded" or not run.drain(0.0):
                wait = FAILED_DRAIN_SECONDS if outcome == "failed" else 0.0
                if not run.drain(wait):
                    self._stop_functions()
                    if not run.drain(STOPPED_DRAIN_SECONDS):
                        self._stale_runs.add(run.run_id)
            run.cleanup()
            for stale in list(self._stale_runs):
                self._store.delete_prefix(_core.run_prefix(stale))
                if stale != run.run_id:
                    self._stale_runs.discard(stale)
        except Exception as error:
            if outcome == "succeeded":
                raise
            self._stale_runs.add(run.run_id)
            return (
                f"dask-serverless could not delete the objects of run {run.run_id} after this "
                f"error: {type(error).__name__}: {error}. They are deleted when the cluster "
                "closes or by a later compute."
            )
        return None

    def _require_running(self) -> None:
        if os.getpid() != self._owner_pid and self._context is not None:
            raise ServerlessError(
                f"this {type(self).__name__} was started by process {self._owner_pid}; "
                f"process {os.getpid()} is a fork of it and cannot use its platform. Start a "
                "cluster in the child, or use the 'spawn' start method of multiprocessing."
            )
        if not self.running:
            name = type(self).__name__
            raise ServerlessError(
                f"this {name} is not running: use `with {name}(...):` or call start()"
            )


def hash_seed() -> str:
    """The ``PYTHONHASHSEED`` of every function of a cluster: the client's when it pins one
    (so functions hash strings as the client does), otherwise a fixed value, as Dask's
    ``processes`` scheduler does. Dask partitions by ``hash()``: functions that hashed strings
    differently would send equal keys to different partitions."""
    value = os.environ.get("PYTHONHASHSEED", "")
    if value.isdigit() and int(value) <= 4_294_967_295:
        return value
    return "6640"


class _InFunctionScheduler:
    """What a pickled cluster becomes in a function: Dask's synchronous scheduler."""

    running = True

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return dask.local.get_sync(dsk, keys, **kwargs)

    def __reduce__(self):
        return (_InFunctionScheduler, ())


def _after_fork_in_child() -> None:
    with _started_lock:
        clusters = list(_started)
        _started.clear()
    for cluster in clusters:
        cluster._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
