"""The simulator seen from Python: a simulated run is a run report like a real one, it
replays for a seed, it takes its task costs from a real run, and it makes the same protocol
decisions as the local platform on the same plan, batch by batch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import dask
import dask.array as da
import pytest
from dask import delayed

import dask_serverless
from dask_serverless import LocalCluster
from dask_serverless.errors import ConfigurationError
from dask_serverless.simulation import platform_parameters
from dask_serverless.simulation.paper import pairwise_sum, tree_reduction


def test_a_simulated_run_is_a_run_report_with_records_cost_and_a_page(tmp_path):
    total = tree_reduction(1024)
    report = dask_serverless.simulate(total, "lambda", memory_mb=3008, max_concurrency=100)
    assert report.succeeded
    assert report["simulated"] and report["platform"] == "lambda"
    tasks = report.tasks
    assert len(tasks) == report["tasks"] == 2047
    assert set(tasks["key"]) >= {"'leaf-0'", "'add-10-0'"} or set(tasks["key"]) >= {
        "leaf-0",
        "add-10-0",
    }
    invocations = report.invocations
    assert 0 < len(invocations) <= report["invocations"]
    assert 1 <= report["peak_concurrency"] <= 100
    assert report["cold_starts"] == report["peak_concurrency"] or report["cold_starts"] > 0
    assert report.total_seconds > 0.5  # cold starts alone take that
    assert report.cost.total > 0
    assert report["critical_path"], report
    assert "simulated" in repr(report)
    page = report.save_html(tmp_path / "simulated.html")
    assert "Bokeh" in open(page).read()


def test_a_seed_replays_and_the_memory_size_moves_time_and_cost():
    x = da.ones((4000, 4000), chunks=(1000, 1000))
    product = (x @ x.T).sum()

    def costs(key):
        return 0.2, 8_000_000

    first = dask_serverless.simulate(product, "lambda", seed=3, task_costs=costs)
    again = dask_serverless.simulate(product, "lambda", seed=3, task_costs=costs)
    assert first.total_seconds == again.total_seconds
    assert first.cost.total == again.cost.total
    small = dask_serverless.simulate(product, "lambda", seed=3, memory_mb=512, task_costs=costs)
    # A 512 MB function has 0.29 of a vCPU against more than one: its tasks take 3.5 times as
    # long (its transfers too).
    assert small.total_seconds > 1.5 * first.total_seconds
    assert small["tasks"] == first["tasks"]


def test_bad_settings_are_refused_clearly():
    total = tree_reduction(4)
    with pytest.raises(ConfigurationError, match="no platform model named .lambda-1999."):
        dask_serverless.simulate(total, "lambda-1999")
    with pytest.raises(ConfigurationError, match="has no parameter 'cold_start'"):
        dask_serverless.simulate(total, parameters={"cold_start": 1})
    with pytest.raises(ConfigurationError, match="a Dask collection"):
        dask_serverless.simulate([1, 2, 3])
    with pytest.raises(ConfigurationError, match="has no cost for task"):
        dask_serverless.simulate(total, task_costs={})
    assert platform_parameters("lambda-2020")["store"]["kind"] == "redis"
    assert any(
        "1,000 concurrent executions every 10 seconds" in source
        for _, source in platform_parameters()["sources"]
    )


def _protocol(report) -> tuple[dict, list]:
    """Per batch: its reads, writes and fan-ins, the children it invoked and the one it
    became; and the batches each invocation ran, in order."""
    columns = report._records["batches"]
    per_batch = {}
    chains: dict[str, list[int]] = {}
    for row in range(len(columns["batch"])):
        if columns["abandoned"][row]:
            continue
        batch = columns["batch"][row]
        per_batch[batch] = (
            columns["store_reads"][row],
            columns["store_writes"][row],
            columns["store_fan_ins"][row],
            columns["invoked"][row],
            columns["became"][row],
            columns["tasks"][row],
        )
        chains.setdefault(columns["invocation"][row], []).append((columns["start_us"][row], batch))
    return per_batch, sorted([batch for _, batch in sorted(chain)] for chain in chains.values())


def test_the_simulation_makes_the_local_platforms_protocol_decisions_batch_by_batch():
    def staggered(number: int) -> int:
        """Leaf ``n`` takes ``0.04 n`` seconds: of two batches that release a child together,
        one finishes tens of milliseconds after the other, whatever the platform's noise.
        (Defined here, it travels by value: no worker imports this module, which would take
        longer than a second and make the first batches look at the store.)"""
        time.sleep(0.04 * number)
        return number

    leaves = [delayed(staggered)(number, dask_key_name=f"leaf-{number}") for number in range(16)]
    total = pairwise_sum(leaves)
    with LocalCluster(max_concurrency=4, batches_per_function=4) as cluster:
        # The workers import what tasks need first (a simulated task costs its own time only).
        assert dask.compute(delayed(sum)([1, 2]), scheduler=cluster.get)[0] == 3
        assert dask.compute(total, scheduler=cluster.get)[0] == sum(range(16))
        real = cluster.last_run
        simulated = dask_serverless.simulate(
            total,
            "local",
            max_concurrency=4,
            parallelism=cluster.parallelism,
            batches_per_function=4,
            task_costs=real,
        )
    assert simulated["batches"] == real["batches"]
    real_batches, real_chains = _protocol(real)
    simulated_batches, simulated_chains = _protocol(simulated)
    assert simulated_batches == real_batches
    assert simulated_chains == real_chains
    assert simulated["invocations"] == real["invocations"]
    # The simulated time is close to the measured one (5% in development; a loaded machine
    # adds its own delays).
    assert 0.5 < simulated.total_seconds / real.total_seconds < 2, (
        simulated.total_seconds,
        real.total_seconds,
    )


def test_estimate_prints_time_and_dollars_of_a_seed_workload():
    command = [sys.executable, "-m", "dask_serverless.simulation", "tree-1024", "--small", "--json"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["total_seconds"] > 0 and summary["cost_dollars"] > 0
    assert summary["platform"] == "lambda"
    unknown = subprocess.run(
        [sys.executable, "-m", "dask_serverless.simulation", "no-such-workload"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 2 and "no-such-workload" in unknown.stderr


def test_a_lambda_cluster_estimates_a_compute_with_its_own_settings_without_deploying():
    from dask_serverless import LambdaCluster

    cluster = LambdaCluster(region="eu-west-1", memory_mb=1024, max_concurrency=50)
    report = cluster.estimate(tree_reduction(512))
    assert not cluster.running
    assert report["platform"] == "lambda" and report.succeeded
    assert 1 <= report["peak_concurrency"] <= 50
    assert report.cost.pricing.memory_mb == 1024
    assert report.cost.pricing.region == "eu-west-1"
    redis = LambdaCluster(region="eu-west-1", store="redis://10.0.0.1:6379/0")
    assert redis.estimate(tree_reduction(512))["store_operations"] > 0


def test_calibration_compares_a_measured_run_with_its_simulation():
    from dask_serverless.simulation.calibrate import measure

    with LocalCluster() as cluster:
        row, report = measure("tsqr-svd", True, 1, cluster)
    assert row["tasks"] == report["tasks"] and row["batches"] == report["batches"]
    # The same invocations and store operations as the real run.
    assert row["invocations predicted"] == row["invocations measured"]
    measured = row["store operations measured"]
    assert abs(row["store operations predicted"] - measured) <= 0.05 * measured
    assert row["measured s"] > 0 and row["predicted s"] > 0
    assert abs(row["error"]) < 1.0, row


def test_calibration_measures_the_local_models_per_task_times_on_large_runs():
    from dask_serverless.simulation.calibrate import measured_parameters

    with LocalCluster() as cluster:
        dask.compute(tree_reduction(16), scheduler=cluster.get)
        small = cluster.last_run
        dask.compute(tree_reduction(8192), scheduler=cluster.get)
        large = cluster.last_run
    # Too few tasks to tell a per-task time from the fixed parts: the model's own stand.
    assert measured_parameters([small]) == {}
    parameters = measured_parameters([small, large])
    assert set(parameters) == {"function_task_overhead_us", "client_graph_per_task_us"}
    # Microseconds per task, as the platform model has them (a few, not milliseconds).
    assert all(0.1 < value < 200 for value in parameters.values()), parameters
    report = dask_serverless.simulate(tree_reduction(8192), "local", parameters=parameters)
    assert report.succeeded


def test_wukongs_tree_reduction_takes_longer_as_its_tasks_do():
    from dask_serverless.simulation.paper import WUKONG_TREE_REDUCTION, tree_reduction_rows

    rows = tree_reduction_rows()
    assert {row["task ms"] for row in rows} == {int(d * 1000) for d in WUKONG_TREE_REDUCTION}
    for model in ("lambda-2020", "lambda"):
        times = [
            row["warm s"] for row in rows if row["model"] == model and row["plan"] == "2048 x 1"
        ]
        # Eleven levels of tasks on the critical path: about 11 x 0.5 s more at 500 ms.
        assert times == sorted(times) and times[-1] - times[0] > 5.0, times


def test_a_paper_row_says_when_a_simulated_run_failed_instead_of_passing_its_time_off():
    from dask_serverless.simulation.paper import predicted

    total = tree_reduction(16)
    ok = predicted(total, "lambda", 4, 1, lambda key: (0.01, 8))
    assert ok["outcome"] == "ok" and ok["cold s"] > 0
    # Every invocation killed: the run fails, and the row says so with the failure.
    failed = predicted(total, "lambda", 4, 1, lambda key: (0.01, 8), chaos="kill=1.0")
    assert failed["outcome"].startswith("failed: "), failed
    assert "killed" in failed["outcome"]


def test_the_sensitivity_sweep_moves_time_and_cost_the_way_the_model_says(tmp_path):
    from dask_serverless.simulation import sensitivity

    rows = sensitivity.sweep()
    by = {(row["varied"], row["value"]): row for row in rows}
    # Below a vCPU, more memory is faster; above, a single-threaded task gains nothing and
    # costs more.
    assert by[("memory_mb", 512)]["seconds"] > by[("memory_mb", 1769)]["seconds"]
    assert by[("memory_mb", 10240)]["seconds"] == by[("memory_mb", 1769)]["seconds"]
    assert by[("memory_mb", 10240)]["dollars"] > by[("memory_mb", 1769)]["dollars"]
    assert by[("max_concurrency", 8)]["seconds"] > 3 * by[("max_concurrency", 512)]["seconds"]
    assert by[("max_concurrency", 8)]["peak_concurrency"] == 8
    assert by[("store", "redis")]["seconds"] < by[("store", "s3")]["seconds"]
    written = sensitivity.plot(rows, tmp_path)
    assert len(written) == len(sensitivity.SWEEPS) and all(path.stat().st_size for path in written)


# Dask warns that the larger product multiplies its chunks: that is the point here.
@pytest.mark.filterwarnings("ignore::dask.array.core.PerformanceWarning")
def test_costs_measured_on_a_small_array_estimate_a_larger_one_of_the_same_chunks(cluster):
    from dask_serverless.simulation import costs_by_prefix

    def product(size: int):
        x = da.random.RandomState(1).random((size, size), chunks=(200, 200))
        return (x @ x.T).sum()

    assert dask.compute(product(400), scheduler=cluster.get)[0] > 0
    costs = costs_by_prefix(cluster.last_run)
    # A chunk of 200 x 200 doubles (and its pickle's framing), wherever it is stored.
    seconds, size = costs(("random_sample-0123", 0, 0))
    assert seconds > 0 and 200 * 200 * 8 <= size < 200 * 200 * 8 + 1_000
    # The larger graph has a reduction stage the small one lacked: it costs as its kin.
    larger = dask_serverless.simulate(product(2000), "lambda", task_costs=costs)
    assert larger.succeeded and larger["tasks"] > 10 * cluster.last_run["tasks"]
    with pytest.raises(ConfigurationError, match="no task of prefix 'fft'"):
        costs(("fft-0123456789abcdef0123456789abcdef", 0))
