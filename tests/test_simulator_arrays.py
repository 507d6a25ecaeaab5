"""Task costs from an array's metadata alone: the shapes the abstract evaluation gives every
task are the shapes a real compute makes, the costs grow with the work a chunk's shape
implies, and the calibration fits what it measured on the local platform."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from dask.local import get_sync

import dask_serverless
from dask_serverless.simulation import _graph_of
from dask_serverless.simulation.arrays import (
    ArrayCostModel,
    Chunk,
    calibrate,
    evaluate,
    nonnegative_least_squares,
    value_bytes,
)
from dask_serverless.simulation.paper import square_svd, svd_compressed, tsqr


def _shape(value):
    """A value's arrays' shapes, nested as the value is (scalars and others as ``()``)."""
    if isinstance(value, (Chunk, np.ndarray)):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return tuple(_shape(item) for item in value)
    if isinstance(value, dict):
        return {name: _shape(item) for name, item in value.items()}
    return ()


def _collections():
    state = da.random.RandomState(0)
    tall = state.random((20_000, 100), chunks=(5_000, 100))
    square = state.random((4_000, 4_000), chunks=(1_000, 1_000))
    return {
        "svd_compressed": da.linalg.svd_compressed(tall, k=5, seed=1)[1],
        "tsqr and its svd": da.linalg.svd(tall)[1],
        "qr": da.linalg.qr(state.random((40_000, 128), chunks=(5_000, 128)))[1],
        "matmul": (square @ square).sum(),
        "tensordot": da.tensordot(square, square, axes=([1], [0])).sum(axis=0),
        "elementwise and mean": (square * 2 + square.T).mean(axis=0),
        "square svd_compressed": da.linalg.svd_compressed(square, k=5, seed=0)[1],
        "sums": state.random((40_000, 1_000), chunks=(10_000, 1_000)).sum(axis=1).sum(),
        "slices": square[100:2_500, ::3].std(),
    }


@pytest.mark.parametrize("name", list(_collections()))
def test_every_task_gets_the_shape_a_real_compute_makes(name):
    collection = _collections()[name]
    graph = _graph_of(collection)
    outputs, calls = evaluate(graph.keys, graph.nodes, graph.dependencies, collection)
    values = get_sync(graph.graph, list(graph.keys))
    for key, output, value in zip(graph.keys, outputs, values, strict=True):
        if not isinstance(value, (tuple, list, dict)) and np.ndim(value) == 0:
            continue  # a number: a scalar chunk or a NumPy scalar, both small
        assert _shape(output) == _shape(value), key
    assert any(call.family != "elementwise" for task in calls for call in task)


def test_costs_grow_with_the_work_a_chunks_shape_implies():
    model = ArrayCostModel.load()

    def product_seconds(chunk: int) -> float:
        x = da.random.RandomState(0).random((2 * chunk, 2 * chunk), chunks=(chunk, chunk))
        collection = x @ x
        graph = _graph_of(collection)
        _, calls = evaluate(graph.keys, graph.nodes, graph.dependencies, collection)
        return sum(
            model.seconds([call for call in task if call.family == "contraction"]) for task in calls
        )

    # A block product's multiply-adds grow with the cube of the chunk's side.
    small, large = product_seconds(500), product_seconds(2_000)
    assert 20 < large / small < 80, (small, large)
    assert value_bytes(Chunk((1_000, 10), 4)) == 40_000


def test_a_simulated_array_compute_costs_its_tasks_from_metadata_by_default():
    x = da.random.RandomState(0).random((20_000, 20_000), chunks=(2_000, 2_000))
    collection = (x @ x.T).sum()
    from_metadata = dask_serverless.simulate(collection, "lambda", memory_mb=3008)
    constant = dask_serverless.simulate(collection, "lambda", memory_mb=3008, task_costs="constant")
    assert from_metadata.succeeded and constant.succeeded
    # A block product of 2,000 x 2,000 chunks takes a second, not the constant's millisecond.
    assert from_metadata.tasks["duration_s"].max() > 0.1
    assert from_metadata.total_seconds > 2 * constant.total_seconds
    with pytest.raises(dask_serverless.errors.ConfigurationError, match="'metadata', 'constant'"):
        dask_serverless.simulate(collection, task_costs="exact")


def test_nonnegative_least_squares_keeps_coefficients_at_zero_or_above():
    rng = np.random.default_rng(0)
    matrix = rng.random((50, 3))
    truth = np.array([2.0, 0.0, 0.5])
    target = matrix @ truth + rng.normal(0, 1e-6, 50)
    assert np.allclose(nonnegative_least_squares(matrix, target), truth, atol=1e-4)
    # An unconstrained fit would want a negative second coefficient here.
    target = matrix @ np.array([1.0, -1.0, 1.0])
    solution = nonnegative_least_squares(matrix, target)
    assert (solution >= 0).all()
    unconstrained = np.linalg.lstsq(matrix, target, rcond=None)[0]
    assert np.linalg.norm(matrix @ solution - target) >= np.linalg.norm(
        matrix @ unconstrained - target
    )


def test_the_calibration_fits_what_it_measured_on_the_local_platform():
    state = da.random.RandomState(2)
    x = state.random((4_000, 4_000), chunks=(1_000, 1_000))
    tall = state.random((40_000, 100), chunks=(10_000, 100))
    workloads = [
        ("matmul", (x @ x.T).sum()),
        ("elementwise", (x * 2 + x.T).mean(axis=0)),
        ("tsqr", da.linalg.svd(tall)[1]),
    ]
    model, table = calibrate(runs=1, workloads=workloads)
    assert [row["workload"] for row in table] == ["matmul", "elementwise", "tsqr"]
    measured = sum(row["measured s"] for row in table)
    predicted = sum(row["predicted s"] for row in table)
    assert measured > 0 and abs(predicted / measured - 1) < 0.35, table
    assert all(value >= 0 for values in model.coefficients.values() for value in values)


def test_the_paper_experiments_reproduce_wukongs_workloads_at_paper_scale():
    # The graphs the experiments simulate, at the paper's sizes, with their shapes.
    assert tsqr(16_777_216).shape == ()
    assert svd_compressed(8_100_000).shape == (5,)
    report = dask_serverless.simulate(square_svd(50_000), "lambda-2020", memory_mb=3008)
    assert report.succeeded
    assert report["tasks"] > 400 and report.total_seconds > 1
