"""The benchmark harness: a small run end to end, and the checks that catch wrong results."""

from __future__ import annotations

import csv
import operator
import subprocess
import sys

import dask
import numpy as np
import pytest
from dask import delayed

from dask_serverless import LocalCluster
from dask_serverless.benchmark.checking import compare
from dask_serverless.benchmark.measuring import LAST_RUN_KEYS, PER_TASK_KEYS, measure_run
from dask_serverless.benchmark.report import CSV_COLUMNS
from dask_serverless.benchmark.targets import evaluate_targets, target
from dask_serverless.benchmark.workloads import WORKLOAD_NAMES, synthetic_dependencies, workload


def read_rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(line for line in file if not line.startswith("#")))


def run_bench(folder, *arguments: str) -> subprocess.CompletedProcess:
    """The harness at small sizes, one run, in ``folder``; fails on a non-zero exit."""
    completed = subprocess.run(
        [sys.executable, "-m", "dask_serverless.bench", "--small", "--runs", "1", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=folder,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def test_small_run_writes_checked_results(tmp_path):
    results = tmp_path / "results.csv"
    report = tmp_path / "report.md"
    completed = run_bench(
        tmp_path,
        "--workloads",
        "tree-1024,demo",
        "--schedulers",
        "serverless,sync,threads",
        "--csv",
        str(results),
        "--markdown",
        str(report),
    )
    assert "== targets" in completed.stdout
    assert "demo: " in completed.stdout and "x threads (target <= 1.2x)" in completed.stdout

    with open(results) as file:
        assert file.readline().startswith("# dask-serverless benchmark")
    rows = read_rows(results)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(row["workload"], row["scheduler"]) for row in rows] == [
        (workload, scheduler)
        for workload in ("demo", "tree-1024")
        for scheduler in ("sync", "serverless", "threads")
    ]
    reports_runs = hasattr(LocalCluster(), "last_run")
    for row in rows:
        assert row["runs"] == "1"
        assert row["check"] in ("equal", "close"), row
        assert row["error"] == ""
        assert float(row["median_seconds"]) > 0
        assert float(row["serverless_ratio"]) > 0
        if row["scheduler"] != "serverless":
            assert row["invocations_per_task"] == ""
        elif reports_runs:
            assert int(float(row["tasks"])) > 0
            assert 0 < float(row["invocations_per_task"]) < 1, row
        else:
            # Without cluster.last_run the harness reports nothing rather than guessing.
            assert row["invocations_per_task"] == ""
    assert "## tree-1024" in report.read_text()


@pytest.mark.parametrize(
    ("expected", "actual", "status"),
    [
        (0.5, 0.5, "equal"),
        (np.arange(4.0), np.arange(4.0), "equal"),
        (np.array([1.0, np.nan]), np.array([1.0, np.nan]), "equal"),
        ((np.arange(3), 2.0), (np.arange(3), 2.0), "equal"),
        (1.0, 1.0 + 1e-12, "close"),
        ((np.ones(3), 1.0), (np.ones(3) * (1 + 1e-13), 1.0), "close"),
        (1.0, 1.0 + 1e-6, "mismatch"),
        (np.arange(4), np.array([0, 1, 2, 4]), "mismatch"),
        (np.arange(4), np.arange(5), "mismatch"),
        (np.array([1.0, 2.0]), np.array([1.0, np.nan]), "mismatch"),
        ((1.0, 2.0), (1.0, 2.5), "mismatch"),
        ((1.0, 2.0), (1.0,), "mismatch"),
        ((1.0, 2.0), 1.0, "mismatch"),
        (np.array(["a", "b"]), np.array(["a", "c"]), "mismatch"),
        (0.0, 1e-300, "mismatch"),
    ],
)
def test_compare_catches_wrong_results(expected, actual, status):
    check = compare(expected, actual)
    assert check.status == status
    assert check.failed == (status == "mismatch")
    if status == "mismatch":
        assert str(check).startswith("MISMATCH")


def test_compare_reports_the_largest_relative_difference():
    check = compare(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0 * (1 + 3e-10), 4.0]))
    assert check.status == "close"
    assert check.max_relative_difference == pytest.approx(3e-10, rel=1e-3)
    assert str(check) == "close (max relative difference 3e-10)"
    wrong = compare(np.array([2.0, 4.0]), np.array([2.0, 5.0]))
    assert wrong.max_relative_difference == pytest.approx(0.25)


def test_targets_say_pass_miss_or_not_measured():
    ratio = target("demo", 1.5, operator.le, 1.2, "{:.2f}x threads", "1.2x")
    assert str(ratio) == "demo: 1.50x threads (target <= 1.2x): MISS"
    rate = target("planner", 2e6, operator.ge, 1e6, "{:,.0f} tasks/s", "1,000,000 tasks/s")
    assert rate.verdict == "PASS"
    missing = target("planner", None, operator.ge, 1e6, "{:,.0f} tasks/s", "1,000,000 tasks/s")
    assert str(missing) == "planner: - (target >= 1,000,000 tasks/s): -"
    assert evaluate_targets([], None) == []


def test_synthetic_graph_is_acyclic_with_one_output():
    dependencies, outputs = synthetic_dependencies(chains=10, length=50)
    assert len(dependencies) == 10 * 50 + 9
    assert all(needed < task for task, numbers in enumerate(dependencies) for needed in numbers)
    assert outputs == [len(dependencies) - 1]
    cross_links = sum(len(numbers) == 2 for numbers in dependencies[: 10 * 50])
    assert cross_links > 0


def test_the_report_has_the_wide_summary_and_a_warm_up(tmp_path):
    report = tmp_path / "report.md"
    completed = run_bench(
        tmp_path,
        "--workloads",
        "tree-1024",
        "--schedulers",
        "serverless,sync",
        "--markdown",
        str(report),
    )
    # A warm-up run of each scheduler, not timed, before the timed one.
    assert "warm-up    serverless" in completed.stdout
    assert completed.stdout.index("warm-up    serverless") < completed.stdout.index("run 1/1")
    assert "(below 1: serverless is faster than the other)" in completed.stdout
    # The CSV goes to the ignored folder by default.
    assert (tmp_path / "bench-results" / "bench-results.csv").is_file()
    text = report.read_text()
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "| workload | runs | sync s | serverless s |" in summary
    assert "| tree-1024 | 1 |" in summary


def test_the_catalogue_is_usable_without_the_command_line():
    assert workload("tree-1024").name == "tree-1024"
    assert workload("zero-work").build is None
    with pytest.raises(KeyError, match="choose from demo"):
        workload("no-such-workload")
    assert all(workload(name).name == name for name in WORKLOAD_NAMES)


def test_one_run_measured_alone_is_one_row(cluster):
    """What an experiment over cluster settings uses: one compute, checked, as a flat row."""
    built = workload("tree-1024").build(True)
    (reference,) = dask.compute(built.collection, scheduler="sync")
    run = measure_run(built.collection, cluster.get, reference=reference, cluster=cluster)
    assert not run.failed
    row = run.as_row()
    assert row["check"] == "equal" and row["error"] is None and row["seconds"] > 0
    assert set(LAST_RUN_KEYS) | set(PER_TASK_KEYS) <= set(row)
    # 1,024 leaves and 1,023 additions.
    assert row["tasks"] == 2_047 and 0 < row["invocations_per_task"] < 1
    assert "value" not in row

    wrong = measure_run(delayed(operator.add)(1, 1), cluster.get, reference=3, cluster=cluster)
    assert wrong.failed and wrong.as_row()["check"] == "mismatch"
    failed = measure_run(delayed(operator.truediv)(1, 0), cluster.get, cluster=cluster)
    assert failed.failed and failed.seconds is None
    assert failed.error is not None and failed.error.startswith("ZeroDivisionError")
    # Without a cluster there is no run report, and no reference means no check.
    plain = measure_run(built.collection, "sync")
    assert plain.last_run is None and plain.check is None and plain.value == reference
