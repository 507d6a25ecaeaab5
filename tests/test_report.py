"""The run report (``cluster.last_run``): per-invocation and per-task records, the summary it
keeps as a mapping, and the bill recomputed by hand."""

from __future__ import annotations

import dask
import dask.array as da
import pytest
from dask.callbacks import Callback

from dask_serverless.report import Pricing, RunReport, price_table
from report_checks import check_bill_by_hand


def test_a_report_has_a_row_per_task_and_per_invocation(cluster):
    x = da.ones((400, 400), chunks=100)
    total = (x + x.T).sum()
    assert total.compute(scheduler=cluster.get) == 320_000
    report = cluster.last_run
    assert isinstance(report, RunReport)
    # The summary reads as the dict it replaces.
    assert report["succeeded"] is True and report.succeeded
    assert report["run_id"] == report.run_id
    assert report["tasks"] == len(report.tasks)
    tasks = report.tasks
    assert tasks["key"].nunique() == len(tasks)
    assert {"ones_like", "sum"} <= set(tasks["prefix"]), set(tasks["prefix"])
    assert (tasks["duration_s"] >= 0).all() and (tasks["start_s"] >= 0).all()
    invocations = report.invocations
    assert set(tasks["invocation"]) <= set(invocations["invocation"])
    # Every task ran in exactly one invocation that counted.
    assert invocations["tasks"].sum() == len(tasks)
    assert invocations["batches"].sum() == report["batches"]
    assert (invocations["duration_s"] >= 0).all()
    assert ((invocations["cpu_idle_share"] >= 0) & (invocations["cpu_idle_share"] <= 1)).all()
    assert (invocations["peak_memory_bytes"] > 10_000_000).all()
    assert (invocations["cpu_user_s"] + invocations["cpu_kernel_s"] > 0).any()
    # Invocations made by functions and by the client add up to the run's count.
    assert invocations["invocations_made"].sum() <= report["invocations"]
    # A function invoked by another waited a measurable time before it started.
    waits = invocations["wait_s"].dropna()
    assert len(waits) > 0 and (waits >= 0).all() and (waits < 60).all()
    # Inputs: from the same batch, handed over in memory, or read from the store.
    moved = tasks[["inputs_same_batch", "inputs_in_memory", "inputs_from_store"]].sum(axis=1)
    assert moved.sum() > 0
    loaded = sum(len(read) for read in report._records["batches"]["values_read"])
    assert loaded > 0
    # Each value loaded is the input of one task at least.
    assert tasks["inputs_from_store"].sum() >= loaded
    # Functions say when each step after a batch's tasks ended: the time is split by them.
    phases = set(report.phases["phase"])
    assert {"loading", "marking done", "fan-in", "reporting"} <= phases, phases
    assert "finishing" not in phases, phases
    text = repr(report)
    assert "tasks in" in text and "cost: $" in text and "invocations on" in text
    assert "<table>" in report._repr_html_() and "cost" in report._repr_html_()
    summary = report.to_dict()
    assert summary["cost_dollars"] == pytest.approx(report.cost.total)
    assert summary["instances"] >= 1


def test_the_bill_recomputed_by_hand(cluster):
    total = da.ones((300, 300), chunks=100).sum()
    assert total.compute(scheduler=cluster.get) == 90_000
    check_bill_by_hand(cluster.last_run, cluster.memory_mb)
    assert "as if on AWS Lambda" in repr(cluster.last_run.cost)


def test_prices_are_dated_sourced_and_checked():
    table = price_table()
    assert table["recorded"] and table["sources"]
    for region, prices in table["regions"].items():
        assert set(prices["lambda_gb_second"]) == {"x86_64", "arm64"}, region
        assert prices["lambda_gb_second"]["arm64"] < prices["lambda_gb_second"]["x86_64"]
    empty = RunReport({"succeeded": True, "total_seconds": 0.0}, pricing=Pricing(region="mars-1"))
    with pytest.raises(ValueError, match="no prices for region 'mars-1'"):
        empty.cost  # noqa: B018 - the property computes
    assert "unknown (no prices for region 'mars-1'" in repr(empty)


class _Counting(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.finished = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.finished += 1


def test_a_batch_of_more_tasks_than_fit_a_message_reports_every_task(tmp_path):
    from dask_serverless import LocalCluster

    # One function and no parallelism: batches of up to 10,000 tasks, whose records are more
    # than one message of the result channel can carry.
    values = da.arange(12_000, chunks=1) + 1
    with LocalCluster(max_concurrency=1, batches_per_function=1) as cluster:
        counting = _Counting()
        with counting:
            assert values.sum().compute(scheduler=cluster.get) == sum(range(1, 12_001))
        report = cluster.last_run
        assert report["batches"] < report["tasks"] / 1000
        assert len(report.tasks) == report["tasks"]
        assert counting.finished == report["tasks"]
        assert report.invocations["messages_sent"].sum() > report["batches"]


def test_a_failed_compute_still_has_its_report(cluster):
    def fail(value):
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        dask.delayed(fail)(1).compute(scheduler=cluster.get)
    report = cluster.last_run
    assert report["succeeded"] is False
    assert len(report.tasks) == 0
    assert report.cost.total >= 0
