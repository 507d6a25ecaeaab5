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
from pathlib import Path

import dask
import pytest

from dask_serverless import LocalCluster
from dask_serverless.benchmark.checking import compare
from dask_serverless.benchmark.workloads import build_demo

sys.path.insert(0, os.path.dirname(__file__))
from chaos_suite import random_graph  # noqa: E402

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
            import time

            time.sleep(2.5)
        assert cluster._store.list("") == []
    injected = _injected(log)
    for fault in expected_faults:
        assert injected[fault] > 0, f"{spec}: no {fault} injected ({dict(injected)})"
