"""Fault injection (``LocalCluster(chaos=...)``): each fault class fires, and computes under each
class alone and all together return the results of Dask's ``sync`` scheduler.

A short, seeded version of the chaos suite (``make chaos`` runs ``tests/chaos_suite.py``, many
computes per class). Every process appends the faults it injects to the file named by
``DASK_SERVERLESS_CHAOS_LOG``, so the test counts them, those of killed functions included.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path

import dask
import pytest

from dask_serverless import LambdaCluster, LocalCluster
from dask_serverless.benchmark.checking import compare
from dask_serverless.benchmark.workloads import build_demo

sys.path.insert(0, os.path.dirname(__file__))
from aws_endpoint import CREDENTIALS, aws_endpoint  # noqa: E402
from chaos_suite import ENDPOINT_PYTHON, account_leftovers, random_graph  # noqa: E402

GRAPHS = 6


def _injected(log: Path) -> collections.Counter:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line.split(" ", 1)[0] for line in log.read_text().splitlines())


def test_a_bad_spec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="the rate of 'kill' must be between 0 and 1, not 2"):
        LocalCluster(max_concurrency=1, chaos="kill=2")
    with pytest.raises(ValueError, match="unknown name 'explode'"):
        LocalCluster(max_concurrency=1, chaos="explode=0.1")
    with pytest.raises(ValueError, match="chaos_seed must be a whole number"):
        LocalCluster(max_concurrency=1, chaos="kill=0.1", chaos_seed=-1)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("spec", "expected_faults"),
    [
        ("kill=0.2", {"kill"}),
        ("duplicate=0.5", {"duplicate"}),
        ("throttle=0.5", {"throttle"}),
        ("straggle=0.3,slowdown=3", {"straggle"}),
        ("store=0.15,latency=0.2,latency_ms=20", {"store", "latency"}),
        ("cold=0.5,cold_ms=50", {"cold"}),
        ("kill=0.05,duplicate=0.05,throttle=0.2,straggle=0.01", {"duplicate", "throttle"}),
    ],
)
def test_computes_under_faults_equal_sync(
    spec: str, expected_faults: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "faults"
    monkeypatch.setenv("DASK_SERVERLESS_CHAOS_LOG", str(log))
    collections_to_compute = [random_graph(seed) for seed in range(GRAPHS)]
    collections_to_compute.append(build_demo(True).collection)
    with LocalCluster(
        max_concurrency=2, batches_per_function=2, timeout_s=60, chaos=spec, chaos_seed=11
    ) as cluster:
        for collection in collections_to_compute:
            expected = dask.compute(collection, scheduler="sync")[0]
            actual = dask.compute(collection, scheduler=cluster.get)[0]
            check = compare(expected, actual)
            assert not check.failed, f"{spec}: {check}"
        # Late duplicates land up to 2 s after their original: then nothing may be left.
        if "duplicate" in spec:
            time.sleep(2.5)
        assert cluster._store.list("") == []
    injected = _injected(log)
    for fault in expected_faults:
        assert injected[fault] > 0, f"{spec}: no {fault} injected ({dict(injected)})"


@pytest.mark.timeout(180)
def test_lambda_cluster_under_kills_and_duplicates_equals_sync_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short version of `make chaos CHAOS_ARGS="--platform lambda"`: the functions on the
    AWS-compatible endpoint draw their kills from the run's context, the client's and the
    functions' invokers their duplicates; the account is empty afterwards."""
    functions_log, client_log = tmp_path / "functions", tmp_path / "client"
    # The endpoint's functions inherit the log named when it starts; the client's own faults
    # go to another, named once the endpoint runs.
    monkeypatch.setenv("DASK_SERVERLESS_CHAOS_LOG", str(functions_log))
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    spec = "kill=0.2,duplicate=0.2"
    collections_to_compute = [random_graph(seed) for seed in range(GRAPHS)]
    collections_to_compute.append(build_demo(True).collection)
    with aws_endpoint() as url:
        monkeypatch.setenv("DASK_SERVERLESS_CHAOS_LOG", str(client_log))
        with LambdaCluster(
            region="us-east-1",
            endpoint_url=url,
            memory_mb=1024,
            timeout_s=60,
            parallelism=2,
            batches_per_function=2,
            python_version=ENDPOINT_PYTHON,
            chaos=spec,
            chaos_seed=11,
        ) as cluster:
            for collection in collections_to_compute:
                expected = dask.compute(collection, scheduler="sync")[0]
                actual = dask.compute(collection, scheduler=cluster.get)[0]
                check = compare(expected, actual)
                assert not check.failed, f"{spec}: {check}"
            # Late duplicates land up to 2 s after their original.
            time.sleep(2.5)
            assert [
                key for key in cluster._store.list("") if not key.startswith("deployment/")
            ] == []
        # Nothing of the cluster is left, the log group the platform made for its function at
        # its first invocation included.
        assert account_leftovers(url) == []
    in_functions, in_client = _injected(functions_log), _injected(client_log)
    print(f"faults in the functions {dict(in_functions)}, in the client {dict(in_client)}")
    # The run's context carried the spec to the deployed functions: they killed themselves and
    # duplicated the children they invoked; the client duplicated the invocations it made.
    assert in_functions["kill"] > 0, f"no kill in the functions: {dict(in_functions)}"
    assert in_functions["duplicate"] > 0, f"no duplicate by a function: {dict(in_functions)}"
    assert in_client["duplicate"] > 0, f"no duplicate by the client: {dict(in_client)}"
    assert in_client["kill"] == 0, dict(in_client)


@pytest.mark.timeout(240)
def test_the_client_outlasts_store_failures_that_outlast_the_backend_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a failure rate of 25%, one store operation in 256 fails on each of the backend's four
    tries: about one compute in five would fail in the client. A function's failure is redone
    by the client; the client's own operations (uploads, the lease, fetching results, deleting
    the run) are tried again for up to a minute, so that no compute fails whose tasks all
    ran."""
    log = tmp_path / "faults"
    monkeypatch.setenv("DASK_SERVERLESS_CHAOS_LOG", str(log))
    with LocalCluster(
        max_concurrency=2, batches_per_function=2, timeout_s=60, chaos="store=0.25", chaos_seed=5
    ) as cluster:
        for seed in range(8):
            collection = random_graph(seed)
            expected = dask.compute(collection, scheduler="sync")[0]
            actual = dask.compute(collection, scheduler=cluster.get)[0]
            check = compare(expected, actual)
            assert not check.failed, check
        assert cluster._store.list("") == []
    assert _injected(log)["store"] > 50, dict(_injected(log))


def test_the_same_seed_replays_the_same_faults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faults are drawn from the seed and the work (a batch and its attempt, a store key without
    the run's id), never from the run's random id or the time: two clusters with one seed
    computing the same graphs inject the same faults."""
    logs = []
    for replay in range(2):
        log = tmp_path / f"faults-{replay}"
        monkeypatch.setenv("DASK_SERVERLESS_CHAOS_LOG", str(log))
        with LocalCluster(
            max_concurrency=1, batches_per_function=2, chaos="kill=0.2,store=0.2", chaos_seed=3
        ) as cluster:
            for seed in range(3):
                collection = random_graph(seed)
                expected = dask.compute(collection, scheduler="sync")[0]
                assert not compare(
                    expected, dask.compute(collection, scheduler=cluster.get)[0]
                ).failed
        logs.append(sorted(log.read_text().splitlines()))
    assert logs[0], "no fault injected"
    assert logs[0] == logs[1]
