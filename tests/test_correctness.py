"""Results equal Dask's own synchronous scheduler where a naive port to functions goes wrong:
shuffles (Dask's default one is on disk), graphs of ``dask.graph_manipulation`` (aliases of
renamed keys), string hashing across functions, literal outputs, nested computes."""

from __future__ import annotations

import glob
import os

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed
from dask.dataframe.utils import assert_eq
from dask.graph_manipulation import bind, checkpoint, clone, wait_on

from dask_serverless import LocalCluster, UnsupportedGraphError


@pytest.fixture(scope="module")
def shuffle_cluster(tmp_path_factory):
    """A cluster whose functions have a temporary directory of their own, to see whether they
    create on-disk shuffle directories (other processes of the machine may use /tmp)."""
    private = tmp_path_factory.mktemp("function-tmp")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(private)
    try:
        running = LocalCluster(
            max_concurrency=2, memory_mb=1024, timeout_s=60, threads_per_function="client"
        )
        running.start()
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous
    running.function_tmp = str(private)
    try:
        yield running
    finally:
        running.close()


def partd_directories(running) -> list[str]:
    return glob.glob(os.path.join(running.function_tmp, "**", "*.partd"), recursive=True)


# -- shuffles ------------------------------------------------------------------------------


def test_bag_groupby_equals_sync_on_disk_shuffle(shuffle_cluster):
    """Dask's default bag shuffle is on disk; functions share no disk."""
    bag = db.from_sequence(range(10_000), npartitions=20)
    summed = bag.groupby(lambda i: i % 13, shuffle="disk").map(lambda kv: (kv[0], sum(kv[1])))
    expected = summed.compute(scheduler="sync")
    for _ in range(3):
        assert summed.compute(scheduler=shuffle_cluster.get) == expected
    assert partd_directories(shuffle_cluster) == []


def test_bag_groupby_keeps_the_order_of_groups_and_items(cluster):
    bag = db.from_sequence(range(40), npartitions=4).groupby(lambda i: i % 3, shuffle="disk")
    assert bag.compute(scheduler=cluster.get) == bag.compute(scheduler="sync")


def test_bag_groupby_over_string_keys(cluster):
    words = ["apple", "banana", "cherry", "date", "elder", "fig", "grape"] * 60
    bag = db.from_sequence(words, npartitions=12)
    for shuffle in ("disk", "tasks"):
        counted = bag.groupby(lambda word: word, shuffle=shuffle).map(
            lambda kv: (kv[0], len(kv[1]))
        )
        assert sorted(counted.compute(scheduler=cluster.get)) == sorted(
            counted.compute(scheduler="sync")
        )


def test_strings_hash_the_same_in_every_function(cluster):
    """Dask partitions by hash(): every function of a run must hash strings alike."""
    words = [f"word-{number % 37}" for number in range(2_000)]
    pairs = db.from_sequence(words, npartitions=40).map(lambda word: (word, hash(word) % 4))
    assert len(set(pairs.compute(scheduler=cluster.get))) == 37


def test_bag_foldby_and_distinct(cluster):
    bag = db.from_sequence([f"k{number % 11}" for number in range(500)], npartitions=9)
    folded = bag.foldby(lambda word: word, lambda total, _: total + 1, 0, lambda a, b: a + b, 0)
    assert sorted(folded.compute(scheduler=cluster.get)) == sorted(folded.compute(scheduler="sync"))
    distinct = bag.distinct()
    assert sorted(distinct.compute(scheduler=cluster.get)) == sorted(
        distinct.compute(scheduler="sync")
    )


@pytest.fixture(scope="module")
def frames():
    table = pd.DataFrame(
        {
            "x": np.arange(1_000) % 17,
            "y": np.arange(1_000),
            "s": [f"k{number % 23}" for number in range(1_000)],
        }
    )
    other = pd.DataFrame({"s": [f"k{number}" for number in range(23)], "z": np.arange(23)})
    return dd.from_pandas(table, npartitions=7), dd.from_pandas(other, npartitions=3)


@pytest.mark.parametrize("method", ["disk", "tasks", None])
@pytest.mark.parametrize("operation", ["shuffle", "set_index", "merge", "groupby-split"])
def test_dataframe_shuffles_equal_sync(shuffle_cluster, frames, method, operation):
    frame, other = frames
    settings = {"dataframe.shuffle.method": method} if method else {}
    with dask.config.set(settings):
        collection = {
            "shuffle": lambda: frame.shuffle("x"),
            "set_index": lambda: frame.set_index("x"),
            "merge": lambda: frame.merge(other, on="s"),
            "groupby-split": lambda: frame.groupby("s").y.sum(split_out=3),
        }[operation]()
        expected = collection.compute(scheduler="sync")
        result = collection.compute(scheduler=shuffle_cluster.get)
    assert partd_directories(shuffle_cluster) == []
    # Dask's own synchronous scheduler orders rows with equal index values differently from
    # run to run on the disk shuffle (its keys carry a fresh uuid): compare sorted rows.
    # A merge's index is each partition's own numbering: not compared.
    if isinstance(result, pd.DataFrame):
        result, expected = sorted_rows(result), sorted_rows(expected)
    assert_eq(result, expected)


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame.reset_index()
    rows = rows.drop(columns=[name for name in ("index",) if name in rows.columns])
    return rows.sort_values(list(rows.columns)).reset_index(drop=True)


def test_shuffle_inside_the_cluster_is_task_based(frames):
    """Inside `with LocalCluster()` a dataframe shuffle does not ask for the disk."""
    from dask.utils import get_default_shuffle_method

    with dask.config.set({"dataframe.shuffle.method": "disk"}):
        with LocalCluster(
            max_concurrency=1, memory_mb=1024, timeout_s=60, threads_per_function="client"
        ):
            assert get_default_shuffle_method() == "tasks"
            frame, _ = frames
            assert len(frame.shuffle("x").compute()) == 1_000
        assert dask.config.get("dataframe.shuffle.method") == "disk"


def test_p2p_shuffle_is_refused_with_advice(cluster):
    from distributed.shuffle._shuffle import shuffle_transfer

    graph = {"a": (shuffle_transfer, 1, 2, 3)}
    with pytest.raises(UnsupportedGraphError, match="shuffle_method='tasks'"):
        cluster.get(graph, "a")


# -- graph manipulation --------------------------------------------------------------------


def test_clone_of_a_rechunked_array(cluster):
    x = da.from_array([1, 2], chunks=-1).rechunk(1) * 2
    x2 = clone(x)
    assert bool((x2 == x).all().compute(scheduler=cluster.get))
    assert int((x2 + x).sum().compute(scheduler=cluster.get)) == 12


def collections():
    array = da.from_array(np.arange(12), chunks=4).rechunk(3) * 3
    bag = db.from_sequence(range(10), npartitions=3).map(lambda i: i * 2)
    value = delayed(abs)(delayed(lambda x: x - 10)(delayed(abs)(-3)))
    return array, bag, value


def outcome(collection, scheduler):
    """The result, or the type of the exception raised (Dask refuses some combinations)."""
    try:
        return collection.compute(scheduler=scheduler)
    except Exception as error:  # noqa: BLE001 - compared with Dask's own outcome
        return type(error)


@pytest.mark.parametrize("kind", ["array", "bag", "delayed"])
@pytest.mark.parametrize("operation", ["clone", "bind", "checkpoint", "wait_on"])
def test_graph_manipulation_on_every_collection(cluster, kind, operation):
    array, bag, value = collections()
    base = {"array": array, "bag": bag, "delayed": value}[kind]
    parent = delayed(lambda: 7)()
    collection = {
        "clone": lambda: clone(base, seed=1),
        "bind": lambda: bind(base, parent),
        "checkpoint": lambda: bind(base, checkpoint(parent, base)),
        "wait_on": lambda: wait_on(base),
    }[operation]()
    expected = outcome(collection, "sync")
    got = outcome(collection, cluster.get)
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
    elif isinstance(expected, type):
        # Dask refuses the graph; so do we, with the same kind of error.
        assert isinstance(got, type) and issubclass(got, expected), got
    else:
        assert got == expected
    assert checkpoint(base).compute(scheduler=cluster.get) is None


def test_graph_manipulation_as_xarray_builds_it(cluster):
    import xarray

    data = xarray.DataArray(
        da.arange(24, chunks=6).reshape(4, 6).rechunk((2, 3)), dims=("row", "column")
    )
    doubled = data * 2
    copy = clone(doubled)
    combined = (copy + doubled).sum("row")
    np.testing.assert_array_equal(
        combined.compute(scheduler=cluster.get).values,
        combined.compute(scheduler="sync").values,
    )
    waited = wait_on(doubled)
    np.testing.assert_array_equal(
        waited.compute(scheduler=cluster.get).values, doubled.compute(scheduler="sync").values
    )


# -- values ------------------------------------------------------------------------------


def test_literal_outputs_come_back_as_the_callers_objects(cluster):
    literal = object()
    items = [1, 2, 3]
    computed, same_list = dask.compute(delayed(literal), delayed(items), scheduler=cluster.get)
    assert computed is literal
    assert same_list is items


def test_literal_output_next_to_computed_ones(cluster):
    items = [4, 5]
    literal, total = dask.compute(
        delayed(items), delayed(sum)(delayed(items)), scheduler=cluster.get
    )
    assert literal is items
    assert total == 9


def inner_compute(factor):
    return (da.ones(10, chunks=5) * factor).sum().compute()


def test_nested_compute_runs_inside_the_function(cluster):
    assert delayed(inner_compute)(3).compute(scheduler=cluster.get) == 30.0


def test_a_graph_that_holds_the_clusters_scheduler(cluster):
    holder = delayed(lambda scheduler: scheduler.get({"a": 1, "b": (abs, -2)}, "b"))
    assert holder(cluster).compute(scheduler=cluster.get) == 2


def test_store_into_an_array_of_this_process_is_refused_with_advice(cluster):
    """Functions would write into copies: a silently unchanged target is refused instead."""
    x = da.ones((4, 4), chunks=(2, 2))
    target = np.zeros((4, 4))
    with pytest.raises(UnsupportedGraphError, match=r"target\[\.\.\.\] = x.compute\(\)"):
        da.store(x, target, scheduler=cluster.get)
    assert target.sum() == 0


def test_store_into_an_in_memory_array_computed_and_assigned(cluster):
    x = da.arange(16, chunks=4).reshape(4, 4)
    target = np.zeros((4, 4))
    target[...] = x.compute(scheduler=cluster.get)
    np.testing.assert_array_equal(target, np.arange(16).reshape(4, 4))
