"""Results equal Dask's own sync scheduler on the workloads of the seeds (smaller sizes)."""

from __future__ import annotations

import operator

import dask
import dask.array as da
import dask.bag as db
import numpy as np
from dask import delayed


def both(cluster, *collections):
    expected = dask.compute(*collections, scheduler="sync")
    actual = dask.compute(*collections, scheduler=cluster.get)
    return expected, actual


def test_demo_mean(cluster):
    x = da.random.RandomState(42).random((2000, 2000), chunks=(500, 500))
    (expected,), (actual,) = both(cluster, x.mean())
    assert actual == expected


def test_demo_inside_with_block_uses_engine(cluster):
    x = da.random.RandomState(42).random((1000, 1000), chunks=(250, 250))
    before = cluster.statistics()["invocations"]
    with dask.config.set(scheduler=cluster.get):
        value = x.mean().compute()
    assert value == x.mean().compute(scheduler="sync")
    assert cluster.statistics()["invocations"] > before


def test_tree_reduction_of_1024_numbers(cluster):
    values = [delayed(i) for i in range(1024)]
    while len(values) > 1:
        values = [
            delayed(operator.add)(a, b) for a, b in zip(values[::2], values[1::2], strict=True)
        ]
    (expected,), (actual,) = both(cluster, values[0])
    assert actual == expected == sum(range(1024))


def test_matmul(cluster):
    state = da.random.RandomState(1)
    a = state.random((600, 600), chunks=(200, 200))
    b = state.random((600, 600), chunks=(200, 200))
    (expected,), (actual,) = both(cluster, da.matmul(a, b))
    np.testing.assert_array_equal(actual, expected)


def test_x_plus_transpose(cluster):
    x = da.random.RandomState(3).random((800, 800), chunks=(200, 200))
    (expected,), (actual,) = both(cluster, (x + x.T).mean())
    assert actual == expected


def test_tall_and_skinny_svd(cluster):
    x = da.random.RandomState(4).random((4000, 50), chunks=(500, 50))
    expected, actual = both(cluster, *da.linalg.svd(x))
    for left, right in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(left, right)


def test_svd_compressed(cluster):
    x = da.random.RandomState(5).random((1000, 1000), chunks=(250, 250))
    u, s, v = da.linalg.svd_compressed(x, k=5, seed=0)
    expected, actual = both(cluster, u, s, v)
    for left, right in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(left, right)


def test_dataframe_groupby(cluster):
    import dask.dataframe as dd
    import pandas as pd

    frame = pd.DataFrame(
        {"group": np.arange(2000) % 7, "value": np.arange(2000, dtype=float) ** 0.5}
    )
    ddf = dd.from_pandas(frame, npartitions=8)
    aggregated = ddf.groupby("group").value.agg(["sum", "mean", "count"])
    (expected,), (actual,) = both(cluster, aggregated)
    pd.testing.assert_frame_equal(actual.sort_index(), expected.sort_index())


def test_bag_fold(cluster):
    bag = db.from_sequence(range(1000), npartitions=10)
    folded = bag.map(lambda value: value * 3).fold(operator.add)
    (expected,), (actual,) = both(cluster, folded)
    assert actual == expected == 3 * sum(range(1000))


def test_delayed_keywords_and_nested_containers(cluster):
    @delayed
    def combine(items, mapping, scale=1, *, offset=0):
        return scale * (sum(items) + sum(mapping.values())) + offset

    parts = [delayed(operator.mul)(i, i) for i in range(5)]
    mapping = {"a": delayed(operator.add)(1, 2), "b": [delayed(abs)(-4)][0]}
    result = combine([parts[0], [parts[1], parts[2]][1], *parts[3:]], mapping, scale=2, offset=7)

    @delayed
    def nested(structure):
        return structure["list"][1]["inner"] + structure["tuple"][0]

    shaped = nested({"list": [0, {"inner": parts[4]}], "tuple": (parts[2], 1)})
    expected, actual = both(cluster, result, shaped)
    assert actual == expected


def test_several_output_keys_and_nesting(cluster):
    x = da.arange(100, chunks=10)
    total, maximum, doubled = x.sum(), x.max(), (x * 2)
    expected, actual = both(cluster, total, maximum, doubled)
    assert actual[0] == expected[0]
    assert actual[1] == expected[1]
    np.testing.assert_array_equal(actual[2], expected[2])


def test_persist_runs_on_engine(cluster):
    x = da.random.RandomState(9).random((400, 400), chunks=(100, 100))
    with dask.config.set(scheduler=cluster.get):
        persisted = (x + 1).persist()
        assert persisted.mean().compute() == (x + 1).mean().compute(scheduler="sync")
