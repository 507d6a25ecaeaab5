"""Experiments: a tiny grid end to end (tables, files, plots), the command line, the pieces.

The grid is 2 memory sizes x 1 concurrency limit x (1 warm-up + 2 runs) of the small
``tree-1024`` workload on the local platform: a few seconds.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import dask_serverless
from dask_serverless.errors import ConfigurationError
from dask_serverless.experiments import ExperimentResult, experiment, load_config, make_grid
from dask_serverless.experiments.plots import PLOTS, phase_medians
from dask_serverless.experiments.progress import Progress, format_duration
from dask_serverless.experiments.running import COORDINATES
from dask_serverless.report import PHASES

MEMORY_SIZES = [512, 1024]
RUNS, WARMUP = 2, 1
TABLE_FILES = ("runs.csv", "runs.parquet", "invocations.csv", "invocations.parquet")
PLOT_FILES = tuple(PLOTS)
LOCAL_OPTIONS = {"timeout_s": 60, "threads_per_function": 1}


def sum_of_squares():
    """A callable workload: a Dask collection built by the caller's own code."""
    import dask.array as da

    return (da.arange(10_000, chunks=1_000) ** 2).sum()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny grid, run once for the module, with its output folder and what it printed."""
    folder = tmp_path_factory.mktemp("experiment")
    stream = io.StringIO()
    original = sys.stderr
    sys.stderr = stream
    try:
        result = experiment(
            workloads=["tree-1024", sum_of_squares],
            memory_mb=MEMORY_SIZES,
            max_concurrency=[2],
            runs=RUNS,
            warmup=WARMUP,
            small=True,
            output=folder,
            local_options=LOCAL_OPTIONS,
        )
    finally:
        sys.stderr = original
    return result, folder, stream.getvalue()


def test_the_public_name_is_the_experiment_function():
    assert dask_serverless.experiment is experiment
    assert "experiment" in dask_serverless.__all__


def test_one_row_per_compute_with_its_coordinates_and_figures(saved):
    result, _, _ = saved
    runs = result.runs
    workloads = ["tree-1024", "sum_of_squares"]
    computes = len(MEMORY_SIZES) * len(workloads) * (WARMUP + RUNS)
    assert len(runs) == computes
    assert list(runs.columns[: len(COORDINATES)]) == list(COORDINATES)
    expected = {
        (workload, "local", memory, 2, number, number <= WARMUP)
        for workload in workloads
        for memory in MEMORY_SIZES
        for number in range(1, WARMUP + RUNS + 1)
    }
    assert set(runs[list(COORDINATES)].itertuples(index=False, name=None)) == expected
    assert runs["error"].isna().all(), runs["error"].dropna().tolist()
    assert set(runs["check"]) == {"equal"}
    assert runs["run_id"].nunique() == computes
    for column in ("seconds", "cost_dollars", "gb_seconds", "tasks", "invocations",
                   *(f"{phase}_seconds" for phase in PHASES)):  # fmt: skip
        assert (runs[column] >= 0).all(), column
    assert (runs["seconds"] > 0).all() and (runs["cost_dollars"] > 0).all()
    items = [
        column for column in runs.columns if column.startswith("cost_") and column != "cost_dollars"
    ]
    assert len(items) == 4
    assert runs[items].sum(axis=1).to_numpy() == pytest.approx(runs["cost_dollars"].to_numpy())
    # A function instance's peak resident memory stays within its memory size (the local
    # platform stops one that exceeds it).
    assert (runs["peak_memory_bytes"] > 0).all()
    assert (runs["peak_memory_bytes"] <= runs["memory_mb"] * 2**20).all()
    # The first compute of a fresh cluster starts its workers: the warm-ups take the cold starts.
    warmups = runs[runs["warmup"]]
    assert (warmups.groupby("memory_mb")["cold_starts"].sum() > 0).all()


def test_one_row_per_invocation_with_its_run(saved):
    result, _, _ = saved
    runs, invocations = result.runs, result.invocations
    assert list(invocations.columns[: len(COORDINATES) + 1]) == [*COORDINATES, "run_id"]
    counted = invocations.groupby("run_id").size()
    assert counted.to_dict() == runs.set_index("run_id")["invocations"].astype(int).to_dict()
    joined = invocations.merge(runs, on="run_id", suffixes=("", "_run"))
    for name in COORDINATES:
        assert (joined[name] == joined[f"{name}_run"]).all(), name
    for column in ("duration_s", "latency_s", "cpu_user_s", "wait_s"):
        assert (invocations[column] >= 0).all(), column
    assert (invocations["latency_s"] >= invocations["duration_s"]).all()
    assert invocations["cold"].any() and (~invocations["cold"]).any()


def test_the_summary_counts_the_timed_runs_only(saved):
    result, _, _ = saved
    summary = result.summary()
    assert len(summary) == 2 * len(MEMORY_SIZES)
    assert (summary["runs"] == RUNS).all() and (summary["failed"] == 0).all()
    for row in summary.itertuples(index=False):
        timed = result.runs[
            (result.runs["workload"] == row.workload)
            & (result.runs["memory_mb"] == row.memory_mb)
            & ~result.runs["warmup"]
        ]
        assert row.median_seconds == pytest.approx(timed["seconds"].median())
        assert row.median_cost_dollars == pytest.approx(timed["cost_dollars"].median())
    markdown = result.summary_markdown().splitlines()
    assert len(markdown) == 2 + len(summary)
    assert markdown[0].startswith("| workload | platform |")


def test_tables_read_back_equal_from_csv_and_parquet(saved):
    result, folder, _ = saved
    for name, frame in (("runs", result.runs), ("invocations", result.invocations)):
        from_parquet = pd.read_parquet(folder / f"{name}.parquet")
        pd.testing.assert_frame_equal(from_parquet, frame)
        from_csv = pd.read_csv(folder / f"{name}.csv")
        pd.testing.assert_frame_equal(from_csv, frame, check_dtype=False)
    loaded = ExperimentResult.load(folder)
    pd.testing.assert_frame_equal(loaded.summary(), result.summary())
    described = json.loads((folder / "experiment.json").read_text())
    assert described["memory_mb"] == MEMORY_SIZES and described["runs"] == RUNS
    assert described["workloads"] == {
        "tree-1024": "pairwise tree of delayed(operator.add) over 1,024 numbers",
        "sum_of_squares": "sum_of_squares() (a Python callable)",
    }
    assert "cores" in described["machine"]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG; fails unless the file is one."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_plots_are_written_as_pngs(saved):
    _, folder, _ = saved
    for name in PLOT_FILES:
        path = folder / name
        width, height = png_size(path)
        assert 300 <= width <= 3000 and 200 <= height <= 4000, (name, width, height)
        assert path.stat().st_size > 10_000, name


def test_the_time_plot_draws_the_summary_medians(saved):
    result, _, _ = saved
    figure = PLOTS["time-by-memory.png"](result)
    (axes,) = figure.axes
    summary = result.summary()
    assert len(axes.lines) == summary["workload"].nunique()
    for line in axes.lines:
        workload = line.get_label().split(",")[0]
        expected = summary[summary["workload"] == workload].sort_values("memory_mb")
        assert list(line.get_xdata()) == expected["memory_mb"].tolist()
        assert list(line.get_ydata()) == pytest.approx(expected["median_seconds"].tolist())
    # Each timed run is a dot.
    dots = sum(len(collection.get_offsets()) for collection in axes.collections)
    assert dots == len(result.timed_runs)


def test_phases_and_the_rest_add_up_to_the_wall_time():
    timed = pd.DataFrame(
        {
            "memory_mb": [512, 512, 1024],
            "seconds": [1.0, 1.2, 0.5],
            **{f"{phase}_seconds": [0.1, 0.1, 0.05] for phase in PHASES},
        }
    )
    medians = phase_medians(timed)
    assert medians.loc[512].sum() == pytest.approx(1.1)
    assert medians.loc[1024, "other_seconds"] == pytest.approx(0.25)


def test_the_progress_line_counts_runs_and_estimates_the_time_left(saved):
    _, _, printed = saved
    total = len(MEMORY_SIZES) * 2 * RUNS
    lines = [line for line in printed.splitlines() if line.startswith("runs ")]
    assert lines[-1].startswith(f"runs {total}/{total}, eta 0:00")
    clock = [0.0]
    stream = io.StringIO()
    progress = Progress(4, 6, stream=stream, clock=lambda: clock[0])
    assert progress.line() == "runs 0/4, eta -"
    clock[0] = 10.0
    progress.advance(timed=False)
    clock[0] = 20.0
    progress.advance(timed=True, what="demo")
    # 20 s for 2 of 6 computes: 40 s left.
    assert stream.getvalue().splitlines() == ["runs 0/4, eta 0:50", "runs 1/4, eta 0:40 (demo)"]
    assert format_duration(3723) == "1:02:03"
    silent = io.StringIO()
    quiet = Progress(1, 1, enabled=False, stream=silent)
    quiet.advance(timed=True)
    assert silent.getvalue() == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workloads": ["no-such-workload"]}, "unknown workload 'no-such-workload'"),
        ({"workloads": ["zero-work"]}, "computes no Dask collection"),
        ({"workloads": ["demo", "demo"]}, "named twice: demo"),
        ({"memory_mb": [64]}, "memory_mb: 64"),
        ({"memory_mb": [512, 512]}, "lists a value twice"),
        ({"platforms": ["gcp"]}, "unknown platforms 'gcp'"),
        ({"runs": 0}, "runs must be a whole number >= 1"),
        ({"cluster_options": {"local": {"memory_mb": 1}}}, "may not set memory_mb"),
    ],
)
def test_a_grid_that_cannot_run_is_refused(change, message):
    arguments = {
        "workloads": ["demo"],
        "memory_mb": [512],
        "max_concurrency": [None],
        "runs": 1,
        "platforms": ["local"],
        "warmup": 0,
        "small": True,
        "cluster_options": {},
        **change,
    }
    with pytest.raises(ConfigurationError, match=message):
        make_grid(**arguments)


def test_configuration_files(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text(
        'workloads = ["gemm", "tests_helper:build"]\nmemory_mb = [512]\n'
        "[local]\nthreads_per_function = 1\n"
    )
    config = load_config(toml)
    assert config.arguments == {
        "workloads": ["gemm", "tests_helper:build"],
        "memory_mb": [512],
        "local_options": {"threads_per_function": 1},
    }
    as_json = tmp_path / "grid.json"
    as_json.write_text(json.dumps({"workloads": ["gemm"], "lambda": {"region": "us-east-1"}}))
    assert load_config(as_json).arguments == {
        "workloads": ["gemm"],
        "lambda_options": {"region": "us-east-1"},
    }
    unknown = tmp_path / "typo.toml"
    unknown.write_text('workloads = ["gemm"]\nmemory = [512]\n')
    with pytest.raises(ConfigurationError, match="unknown key 'memory'"):
        load_config(unknown)


def test_the_command_runs_a_grid_from_a_configuration_file(tmp_path):
    (tmp_path / "my_workloads.py").write_text(
        "import dask.array as da\n\ndef ones_sum():\n    return da.ones(1000, chunks=100).sum()\n"
    )
    config = tmp_path / "grid.toml"
    config.write_text(
        'workloads = ["my_workloads:ones_sum"]\n'
        "memory_mb = [512, 1024]\n"
        "max_concurrency = [1]\n"
        "runs = 1\n"
        'output = "from-config"\n'
        "[local]\n"
        "timeout_s = 60\n"
    )
    command = Path(sys.executable).parent / "dask-serverless"
    environment = dict(os.environ, PYTHONPATH=str(tmp_path), DASK_SERVERLESS_PYTHON=sys.executable)
    completed = subprocess.run(
        [str(command), "experiment", str(config), "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=environment,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "runs 4/4, eta 0:00" in completed.stderr
    assert "| ones_sum | local | 1 | 512 | 2 |" in completed.stdout
    folder = tmp_path / "from-config"
    runs = pd.read_parquet(folder / "runs.parquet")
    assert len(runs) == 2 * (1 + 2)
    assert set(runs["memory_mb"]) == {512, 1024} and set(runs["max_concurrency"]) == {1}
    assert runs["error"].isna().all() and set(runs["check"]) == {"equal"}
    for name in (*TABLE_FILES, *PLOT_FILES, "summary.csv", "experiment.json"):
        assert (folder / name).stat().st_size > 0, name
    png_size(folder / "cost-by-memory.png")


def test_the_cost_plot_shows_the_total_and_the_compute_item(saved):
    result, _, _ = saved
    total, compute = PLOTS["cost-by-memory.png"](result).axes
    summary = result.summary()
    for axes, column in ((total, "median_cost_dollars"), (compute, "median_compute_cost_dollars")):
        plotted = sorted(value for line in axes.lines for value in line.get_ydata())
        assert plotted == pytest.approx(sorted(summary[column]))


def test_the_command_refuses_a_configuration_it_cannot_run(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text('workloads = ["gemm"]\nmemory_mb = [1]\n')
    completed = subprocess.run(
        [sys.executable, "-m", "dask_serverless.experiments", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert "error: memory_mb: 1 is not a whole number of MB in 128-10240" in completed.stderr
    assert not (tmp_path / "experiment-results").exists()


def test_gb_seconds_are_the_invocations_billed_at_the_memory_size(saved):
    result, _, _ = saved
    invocations = result.invocations
    billed_ms = ((invocations["duration_s"] + invocations["init_s"].fillna(0)) * 1000).map(
        math.ceil
    )
    expected = (
        (billed_ms / 1000 * invocations["memory_mb"] / 1024).groupby(invocations["run_id"]).sum()
    )
    measured = result.runs.set_index("run_id")["gb_seconds"]
    assert measured.loc[expected.index].to_numpy() == pytest.approx(expected.to_numpy())


def test_the_functions_package_leaves_the_experiment_libraries_out():
    from dask_serverless.packaging import default_requirements

    names = {requirement.split("==")[0] for requirement in default_requirements()}
    assert names == {"dask", "cloudpickle", "numpy"}


def test_a_grid_over_the_local_platform_and_lambda_on_an_aws_compatible_endpoint(tmp_path):
    """One memory size on both platforms; Lambda is the local AWS-compatible endpoint."""
    from aws_endpoint import CREDENTIALS, aws_endpoint

    saved_variables = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with aws_endpoint() as url:
            result = experiment(
                workloads=["tree-1024"],
                memory_mb=[512],
                runs=1,
                platforms=["local", "lambda"],
                small=True,
                progress=False,
                output=tmp_path,
                local_options=LOCAL_OPTIONS,
                # The endpoint throttles asynchronous invocations beyond a reserved
                # concurrency instead of retrying them as Lambda does: none is reserved here.
                lambda_options={
                    "region": "us-east-1",
                    "endpoint_url": url,
                    "python_version": "3.11",
                    "timeout_s": 60,
                    "parallelism": 2,
                },
            )
    finally:
        for name, value in saved_variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    runs = result.runs
    assert list(runs["platform"]) == ["local", "local", "lambda", "lambda"]
    assert runs["error"].isna().all(), runs["error"].dropna().tolist()
    assert set(runs["check"]) == {"equal"}
    on_lambda = runs[runs["platform"] == "lambda"]
    assert on_lambda["max_concurrency"].isna().all()  # none reserved: the account's limit
    assert (on_lambda["cost_dollars"] > 0).all() and (on_lambda["seconds"] > 0).all()
    assert on_lambda["cold_starts"].iloc[0] > 0  # new functions start cold
    invocations = result.invocations
    assert set(invocations["platform"]) == {"local", "lambda"}
    assert len(invocations[invocations["platform"] == "lambda"]) == on_lambda["invocations"].sum()
    summary = result.summary()
    assert sorted(summary["platform"]) == ["lambda", "local"]
    assert (summary["runs"] == 1).all()
    png_size(tmp_path / "time-by-memory.png")
