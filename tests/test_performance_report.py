"""The run report as an HTML page (``report.save_html``, ``performance_report``), opened in a
real headless browser: Debian's chromium, driven by Playwright through its executable path
(`make browser` installs it; a missing browser fails the tests, never skips them). Also the
phases the page draws, and the HTML fragments Jupyter shows for a report and a cluster."""

from __future__ import annotations

import time
from pathlib import Path

import dask
import dask.array as da
import pytest

import dask_serverless
from browser_page import LoadedPage
from dask_serverless import LocalCluster
from dask_serverless.report import PHASE_DESCRIPTIONS
from dask_serverless.report_page import duration_text


def slow(value: int) -> int:
    time.sleep(0.05)
    return value


def compute_small_graph(cluster) -> int:
    parts = [dask.delayed(slow)(value) for value in range(6)]
    total = dask.delayed(sum)(parts)
    return total.compute(scheduler=cluster.get)


def test_a_saved_page_draws_every_task_and_hovering_one_names_it(cluster, browser, tmp_path):
    assert compute_small_graph(cluster) == 15
    report = cluster.last_run
    tasks = report.tasks
    assert len(tasks) == 7
    path = Path(report.save_html(tmp_path / "run.html"))
    text = path.read_text()
    # Self-contained: BokehJS is inlined, nothing is loaded from elsewhere.
    assert "<script src=" not in text and "Bokeh" in text
    loaded = LoadedPage(browser, path)
    try:
        assert loaded.errors == []
        assert loaded.requests == [loaded.url]
        # One glyph per task, and the spans between them.
        assert loaded.model_length("tasks-1") == len(tasks)
        assert loaded.model_length("phases-1") == len(report.phases) > 0
        longest = tasks.loc[tasks["duration_s"].idxmax()]
        assert longest["prefix"] == "slow"
        tooltip = loaded.hover_glyph("task-stream-1", "tasks-1", longest["key"])
        assert longest["key"] in tooltip
        assert duration_text(longest["duration_s"]) in tooltip
        assert "ms" in duration_text(longest["duration_s"])
        assert loaded.errors == []
        body = loaded.page.inner_text("body")
        assert report.run_id in body
        assert "Client time by phase" in body and f"${report.cost.total:.6f}" in body
        # The plan's explanation, as the plan gives it.
        assert report.explanation and report.explanation.splitlines()[0] in body
    finally:
        loaded.close()


def test_phases_and_tasks_cover_each_batch_from_start_to_report(cluster):
    assert compute_small_graph(cluster) == 15
    report = cluster.last_run
    phases = report.phases
    assert set(phases["phase"]) <= set(PHASE_DESCRIPTIONS)
    # Functions say when each step after the tasks ended: "finishing" is split by them.
    assert {"loading", "reporting"} <= set(phases["phase"])
    assert "finishing" not in set(phases["phase"])
    assert (phases["duration_s"] > 0).all()
    assert (phases["end_s"] - phases["start_s"] - phases["duration_s"]).abs().max() < 1e-9
    batches = report._records["batches"]
    origin = report._start_us()
    tasks = report.tasks
    for invocation, batch, start_us, end_us in zip(
        batches["invocation"], batches["batch"], batches["start_us"], batches["end_us"], strict=True
    ):
        ran = tasks[(tasks["invocation"] == invocation) & (tasks["batch"] == batch)]
        spans = phases[(phases["invocation"] == invocation) & (phases["batch"] == batch)]
        covered = ran["duration_s"].sum() + spans["duration_s"].sum()
        # Spans under a microsecond are left out: at most one per task, and two more.
        assert covered == pytest.approx((end_us - start_us) / 1e6, abs=2e-6 * (len(ran) + 2))
        assert spans["start_s"].min() == pytest.approx((start_us - origin) / 1e6, abs=1e-6)
    # Waiting and cold starts come before the invocation's first batch.
    before = phases[phases["phase"].isin(["waiting", "cold start"])]
    for row in before.itertuples():
        first = phases[(phases["invocation"] == row.invocation) & phases["batch"].notna()]
        assert row.end_s <= first["start_s"].min() + 1e-9


def test_performance_report_writes_a_section_per_compute_on_exit(cluster, browser, tmp_path):
    path = tmp_path / "report.html"
    with dask_serverless.performance_report(path) as recording:
        assert compute_small_graph(cluster) == 15
        first = cluster.last_run
        assert da.ones((20, 20), chunks=10).sum().compute(scheduler=cluster.get) == 400
        second = cluster.last_run
        assert not path.exists()
    assert recording.reports == [first, second]
    # Computes after the block are not recorded.
    assert compute_small_graph(cluster) == 15
    assert len(recording.reports) == 2
    loaded = LoadedPage(browser, path)
    try:
        assert loaded.errors == []
        assert loaded.model_length("tasks-1") == len(first.tasks)
        assert loaded.model_length("tasks-2") == len(second.tasks)
        body = loaded.page.inner_text("body")
        assert "Compute 1 of 2" in body and "Compute 2 of 2" in body
        assert first.run_id in body and second.run_id in body
    finally:
        loaded.close()


def test_performance_report_writes_its_file_when_the_block_raises(cluster, tmp_path):
    def fail(value):
        raise ValueError("no")

    path = tmp_path / "failed.html"
    with pytest.raises(ValueError, match="no"):
        with dask_serverless.performance_report(path) as recording:
            dask.delayed(fail)(1).compute(scheduler=cluster.get)
    assert len(recording.reports) == 1 and recording.reports[0].succeeded is False
    text = path.read_text()
    assert "Compute 1 of 1" in text and "failed in" in text


def test_a_block_without_computes_writes_a_page_that_says_so(browser, tmp_path):
    path = tmp_path / "empty.html"
    with dask_serverless.performance_report(path) as recording:
        pass
    assert recording.reports == []
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    try:
        page.goto(path.resolve().as_uri())
        assert "No compute ran" in page.inner_text("body")
        assert errors == []
    finally:
        page.close()


def test_jupyter_shows_a_report_and_a_cluster_as_html(cluster):
    assert compute_small_graph(cluster) == 15
    report = cluster.last_run
    fragment = report._repr_html_()
    assert fragment.startswith("<div") and "<table>" in fragment
    assert report.run_id in fragment
    assert f"{report['tasks']} tasks in {report['batches']} batches" in fragment
    assert f"${report.cost.total:.6f}" in fragment
    shown = cluster._repr_html_()
    assert "<strong>LocalCluster</strong>" in shown
    assert "<td style='text-align:left'>running</td>" in shown
    assert f"<td style='text-align:left'>{cluster.max_concurrency}</td>" in shown
    assert f"{report['tasks']} tasks" in shown and f"${report.cost.total:.6f}" in shown
    stopped = LocalCluster(max_concurrency=1, prewarm=False)._repr_html_()
    assert "stopped" in stopped and "last compute" not in stopped
