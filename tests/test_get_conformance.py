"""Dask's own conformance tests for scheduler ``get`` functions, against ours."""

from __future__ import annotations

import pytest
from dask.utils_test import GetFunctionTestMixin

from dask_serverless import LocalCluster

_cluster: LocalCluster | None = None


@pytest.fixture(scope="module", autouse=True)
def running_cluster():
    global _cluster
    with LocalCluster(
        max_concurrency=2, memory_mb=1024, timeout_s=60, threads_per_function="client"
    ) as running:
        _cluster = running
        yield running
    _cluster = None


def engine_get(dsk, keys, **kwargs):
    assert _cluster is not None
    return _cluster.get(dsk, keys, **kwargs)


class TestServerlessGet(GetFunctionTestMixin):
    get = staticmethod(engine_get)

    def test_unused_keyword_arguments_are_accepted(self):
        assert self.get({"x": 1, "y": (abs, "x")}, "y", num_workers=3, pool=None) == 1
