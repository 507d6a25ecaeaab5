"""Dask's diagnostics work inside ``with LocalCluster()``."""

from __future__ import annotations

import io

import dask.array as da
from dask.callbacks import Callback
from dask.diagnostics import ProgressBar


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.started = 0
        self.states = 0
        self.pretasks: list = []
        self.posttasks: list = []
        self.finished: list = []

    def _start(self, dsk):
        self.started += 1

    def _start_state(self, dsk, state):
        self.states += 1
        assert state["waiting"]

    def _pretask(self, key, dsk, state):
        self.pretasks.append(key)

    def _posttask(self, key, result, dsk, state, worker_id):
        self.posttasks.append(key)

    def _finish(self, dsk, state, errored):
        self.finished.append(errored)


def test_callbacks_called_for_every_task(cluster):
    x = da.ones((100, 100), chunks=(10, 10)).sum()
    recorder = Recorder()
    with recorder:
        assert x.compute(scheduler=cluster.get) == 10000
    # Every task the engine ran (the optimized graph), each exactly once.
    tasks = cluster.last_run["tasks"]
    assert tasks > 1
    assert recorder.started == 1 and recorder.states == 1
    assert len(recorder.pretasks) == len(recorder.posttasks) == tasks
    assert len(set(recorder.posttasks)) == tasks
    assert recorder.finished == [False]


def test_finish_reports_errors(cluster):
    from dask import delayed

    def boom():
        raise RuntimeError("boom")

    recorder = Recorder()
    with recorder:
        try:
            delayed(boom)().compute(scheduler=cluster.get)
        except RuntimeError:
            pass
    assert recorder.finished == [True]


def test_progress_bar_reaches_100_percent(cluster):
    output = io.StringIO()
    x = da.random.RandomState(0).random((400, 400), chunks=(50, 50)).mean()
    with ProgressBar(out=output, minimum=0, dt=0.01):
        x.compute(scheduler=cluster.get)
    text = output.getvalue()
    assert "100% Completed" in text
