"""What every cluster shares: the Dask scheduler ``get``, the run lifecycle and the switch of
Dask's default scheduler inside ``with``.

A subclass provides ``start()`` and ``close()``, sets ``_context`` (where functions find the
platform and the store, as the native ``RunContext`` JSON minus the run id) and ``_store`` (a
native store handle used to delete the objects of runs that did not stop in time).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import dask

from dask_serverless import _core
from dask_serverless._scheduler import compute
from dask_serverless.errors import ServerlessError

# How long a failed compute waits for its other running clusters before raising.
DRAIN_SECONDS = 10.0


class ServerlessCluster:
    """Base of ``LocalCluster`` and ``LambdaCluster``."""

    workers: int
    clusters_per_worker: int
    timeout_s: float

    def __init__(self) -> None:
        self._context: dict | None = None
        self._store: Any = None
        self._config: Any = None
        self._lock = threading.Lock()
        self._stale_runs: set[str] = set()
        #: The cost of the latest compute: seconds per phase (ingest, plan, upload, run,
        #: fetch, total; ``started`` from the call to the started run), tasks, clusters,
        #: invocations, store operations and bytes.
        self.last_run: dict | None = None

    def start(self) -> ServerlessCluster:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._context is not None

    def __enter__(self):
        self.start()
        try:
            self._config = dask.config.set(scheduler=self.get)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _restore_scheduler(self) -> None:
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """A Dask scheduler ``get``: pass ``scheduler=cluster.get`` to ``compute``."""
        self._require_running()
        with self._lock:
            return compute(self, dsk, keys, **kwargs)

    def _start_run(self, run_id: str, plan: Any) -> Any:
        context = dict(self._context, run_id=run_id)
        return _core.ClientRun(json.dumps(context), plan, self.timeout_s + 15.0)

    def _end_run(self, run: Any, succeeded: bool) -> None:
        """Delete the run's objects. After a failure, first stop its clusters from starting
        and wait (briefly) for running ones; a run that does not stop in time is swept again
        after later computes and when the cluster closes."""
        if not succeeded and not run.drain(DRAIN_SECONDS):
            self._stale_runs.add(run.run_id)
        run.cleanup()
        for stale in list(self._stale_runs):
            self._store.delete_prefix(f"{stale}/")
            if stale != run.run_id:
                self._stale_runs.discard(stale)

    def _require_running(self) -> None:
        if not self.running:
            name = type(self).__name__
            raise ServerlessError(
                f"this {name} is not running: use `with {name}(...):` or call start()"
            )
