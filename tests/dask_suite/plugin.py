"""A pytest plugin that runs Dask's own test suite on dask-serverless.

Load it with ``-p dask_suite.plugin`` (``tests/`` on ``sys.path``); ``run.py`` does this for
both of its passes. Options:

``--dask-suite-mode=off``
    Dask's pass: no cluster, nothing changed in Dask; outcomes are only recorded.
``--dask-suite-mode=default``
    One ``LocalCluster`` for the whole session, Dask's default scheduler for every test (set
    before each test's fixtures, since a test may leave Dask's configuration changed). Computes
    that name a scheduler (``scheduler="sync"``, as ``assert_eq`` of ``dask.array`` and
    ``dask.dataframe`` does) still run on Dask's local schedulers.
``--dask-suite-mode=strict``
    As ``default``, and the names of Dask's local schedulers (``"sync"``, ``"synchronous"``,
    ``"single-threaded"``, ``"threads"``, ``"threading"``, ``"processes"``,
    ``"multiprocessing"``) resolve to the cluster too: entries of ``dask.base.named_schedulers``,
    which ``dask.base.get_scheduler`` reads for every string it is given. Functions called
    directly (``dask.get``, ``dask.local.get_sync``, ``dask.threaded.get``) stay Dask's.
``--dask-suite-scheduler=processes``
    A reference instead of ours: Dask's own ``processes`` scheduler takes the cluster's place
    (in ``default`` and ``strict`` mode alike), to tell failures that any scheduler running
    tasks in other processes shares from those that are ours alone.
``--dask-suite-report=PATH``
    Write one JSON line per test: nodeid, outcome (passed, failed, error, skipped, xfailed,
    xpassed), duration, the head of the failure (exception type and message), its longer text,
    and how many computes of the test ran on the cluster. Also a line when each test starts and
    one with the cluster's shared-memory root, so that the driver knows which test killed a
    session that died, and what it left in ``/dev/shm``. ``--dask-suite-append`` appends
    (a resumed session); ``--dask-suite-exclude=FILE`` deselects the node ids it lists,
    ``--dask-suite-include=FILE`` all others.

The scheduler the plugin hands Dask is ``cluster.get`` behind a small callable that counts
computes; it copies and pickles as ``cluster.get`` does, so tests meet what users meet.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any

import pytest

# The names under which Dask's local schedulers are found.
LOCAL_SCHEDULER_NAMES = (
    "sync",
    "synchronous",
    "single-threaded",
    "threads",
    "threading",
    "processes",
    "multiprocessing",
)


class _Scheduler:
    """What the plugin hands Dask as the scheduler: ``_Suite.get``. It copies and pickles as
    ``cluster.get`` itself does (what ``with LocalCluster():`` puts in Dask's configuration),
    so that tests meet what users meet when they deep-copy the configuration or pickle it."""

    def __init__(self, suite: _Suite) -> None:
        self.suite = suite

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return self.suite.get(dsk, keys, **kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self._get().__reduce_ex__(protocol)

    def __deepcopy__(self, memo: dict) -> Any:
        return copy.deepcopy(self._get(), memo)

    def _get(self) -> Any:
        if self.suite.cluster is None:
            import dask.multiprocessing

            return dask.multiprocessing.get
        return self.suite.cluster.get

    def __repr__(self) -> str:
        return f"<dask-suite scheduler: {self._get()!r}>"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dask-suite", "Dask's test suite on dask-serverless")
    group.addoption(
        "--dask-suite-mode",
        choices=("off", "default", "strict"),
        default="default",
        help="off: Dask's schedulers; default: ours as Dask's default; strict: also for the "
        "names of Dask's local schedulers",
    )
    group.addoption("--dask-suite-report", default=None, help="JSON lines of outcomes")
    group.addoption(
        "--dask-suite-append", action="store_true", help="append to the report (a resumed session)"
    )
    group.addoption(
        "--dask-suite-exclude", default=None, help="a file of node ids to deselect, one a line"
    )
    group.addoption("--dask-suite-include", default=None, help="a file of the only node ids to run")
    group.addoption(
        "--dask-suite-scheduler",
        choices=("ours", "processes"),
        default="ours",
        help="ours: a LocalCluster; processes: Dask's processes scheduler, as a reference",
    )
    group.addoption("--dask-suite-workers", type=int, default=2, help="LocalCluster workers")
    group.addoption(
        "--dask-suite-function-timeout",
        type=float,
        default=120.0,
        help="LocalCluster timeout_s (below pytest's --timeout, so a stuck function is "
        "stopped by the platform first)",
    )


class _Suite:
    """The session's cluster, the scheduler function handed to Dask, and the report."""

    def __init__(self, config: pytest.Config) -> None:
        self.mode = config.getoption("--dask-suite-mode")
        self.target = config.getoption("--dask-suite-scheduler")
        self.workers = config.getoption("--dask-suite-workers")
        self.function_timeout = config.getoption("--dask-suite-function-timeout")
        path = config.getoption("--dask-suite-report")
        self.report = None
        if path:
            append = config.getoption("--dask-suite-append")
            self.report = open(path, "a" if append else "w", buffering=1)  # noqa: SIM115
        self.cluster: Any = None
        self.saved_schedulers: dict[str, Any] = {}
        self.calls = 0
        self.results: dict[str, dict] = {}
        self.cluster_restarts = 0
        self.scheduler = _Scheduler(self)

    # -- the cluster ---------------------------------------------------------------------
    def start(self) -> None:
        if self.mode == "off":
            return
        if self.target == "ours":
            from dask_serverless import LocalCluster

            self.cluster = LocalCluster(
                max_concurrency=self.workers,
                threads_per_function="client",
                timeout_s=self.function_timeout,
            ).start()
            root = getattr(self.cluster, "_store_root", None)
            if root:
                self.write({"cluster_root": root})
        if self.mode == "strict":
            import dask.base

            for name in LOCAL_SCHEDULER_NAMES:
                if name in dask.base.named_schedulers:
                    self.saved_schedulers[name] = dask.base.named_schedulers[name]
                    dask.base.named_schedulers[name] = self.scheduler

    def stop(self) -> None:
        if self.saved_schedulers:
            import dask.base

            dask.base.named_schedulers.update(self.saved_schedulers)
            self.saved_schedulers = {}
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """The scheduler Dask calls: the cluster's ``get``, counted."""
        self.calls += 1
        if self.target == "processes":
            import dask.multiprocessing

            return dask.multiprocessing.get(dsk, keys, **kwargs)
        if not self.cluster.running:  # a previous test broke it: start a new one
            self.cluster_restarts += 1
            self.stop()
            self.start()
        return self.cluster.get(dsk, keys, **kwargs)

    def before_test(self) -> None:
        self.calls = 0
        if self.mode == "off":
            return
        import dask.config

        # Set directly (not through dask.config.set): a test that replaced or refreshed the
        # configuration cannot unset it for the tests after it.
        dask.config.config["scheduler"] = self.scheduler
        if self.mode == "strict":
            import dask.base

            for name in self.saved_schedulers:
                dask.base.named_schedulers[name] = self.scheduler

    # -- the report ----------------------------------------------------------------------
    def record(self, report: pytest.TestReport) -> None:
        entry = self.results.setdefault(
            report.nodeid,
            {"nodeid": report.nodeid, "outcome": None, "duration": 0.0},
        )
        entry["duration"] += report.duration
        outcome = _outcome(report)
        if outcome is None:
            return
        # The setup's or the call's outcome, unless a later phase failed after a pass.
        if entry["outcome"] is None or (entry["outcome"] == "passed" and outcome == "error"):
            entry["outcome"] = outcome
            entry["phase"] = report.when
            if outcome in ("failed", "error", "skipped", "xfailed"):
                entry["reason"], entry["text"] = _reason(report)

    def finish(self, nodeid: str) -> None:
        entry = self.results.pop(nodeid, None)
        if entry is None:
            return
        entry["ours_calls"] = self.calls
        if self.cluster is not None and self.cluster.running:
            try:
                entry["objects_left"] = len(self.cluster._store.list(""))
            except Exception:  # noqa: BLE001 - a broken store is recorded, not fatal
                entry["objects_left"] = -1
        self.write(entry)

    def write(self, entry: dict) -> None:
        if self.report is not None:
            self.report.write(json.dumps(entry, default=str) + "\n")


def _outcome(report: pytest.TestReport) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpassed" if xfail else "passed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "failed"
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


def _reason(report: pytest.TestReport) -> tuple[str, str]:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])[:500], ""
    text = report.longreprtext or ""
    crash = getattr(longrepr, "reprcrash", None)
    head = crash.message if crash is not None else ""
    if not head or " " not in head.strip():
        # No message (a fixture that is not found, an error outside any test code): the
        # first lines pytest marks with "E", else the last line.
        marked = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
        lines = text.strip().splitlines()
        head = " ".join(marked[:3]) if marked else (lines[-1] if lines else head)
    if hasattr(report, "wasxfail") and report.skipped:
        head = f"xfail ({report.wasxfail}): {head}"
    head = " ".join(head.split())
    return head[:500], text[-20000:]


_suite: _Suite | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _suite
    _suite = _Suite(config)


def pytest_sessionstart(session: pytest.Session) -> None:
    assert _suite is not None
    _suite.start()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def listed(option: str) -> set[str] | None:
        path = config.getoption(option)
        if not path:
            return None
        with open(path) as lines:
            return {line.strip() for line in lines if line.strip()}

    excluded = listed("--dask-suite-exclude") or set()
    included = listed("--dask-suite-include")

    def keep(item: pytest.Item) -> bool:
        return item.nodeid not in excluded and (included is None or item.nodeid in included)

    kept = [item for item in items if keep(item)]
    deselected = [item for item in items if not keep(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_runtest_logstart(nodeid: str, location) -> None:
    if _suite is not None:
        _suite.write({"start": nodeid})


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):
    assert _suite is not None
    _suite.before_test()
    yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _suite is not None:
        _suite.record(report)


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    if _suite is not None:
        _suite.finish(nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _suite is None:
        return
    _suite.stop()
    import dask

    config = session.config
    _suite.write(
        {
            "session": True,
            "mode": _suite.mode,
            "scheduler": _suite.target,
            "exitstatus": int(exitstatus),
            "cluster_restarts": _suite.cluster_restarts,
            "pid": os.getpid(),
            # What the session selected, so that a later run knows whether it may reuse it.
            "dask": dask.__version__,
            "keyword": config.getoption("keyword") or "",
            "markexpr": config.getoption("markexpr") or "",
            "include": _digest(config.getoption("--dask-suite-include")),
        }
    )
    if _suite.report is not None:
        _suite.report.close()
        _suite.report = None


def _digest(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, "rb") as listed:
        return hashlib.sha256(listed.read()).hexdigest()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _suite is not None:
        _suite.stop()  # also after an interrupted session; stopping twice is harmless
