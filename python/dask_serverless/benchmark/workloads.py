"""The catalogue of workloads: what the harness and the experiments compute.

A :class:`Workload` is a name, a one-line summary at full size and a ``build(small)`` function
that returns a :class:`Built`: the Dask object to compute, described at the chosen sizes, and
its task count where tasks per second is the measure. Building is never timed; a built object
can be computed any number of times, on any scheduler.

``small=True`` shrinks every workload to a quick check (the harness's ``--small``); the full
sizes are those of the targets (:mod:`dask_serverless.benchmark.targets`).

One entry, ``zero-work``, computes no Dask object (its ``build`` is ``None``): it stands for the
measurement of the engine alone (:mod:`dask_serverless.benchmark.engine`), which plans the
trivial graph and :func:`synthetic_dependencies`.

Code that reuses the catalogue (an experiment over memory sizes and concurrency limits, say)
looks a workload up with :func:`workload`, checks :meth:`Workload.missing_requirements` and
calls ``build``; :func:`dask_serverless.benchmark.measuring.measure_run` times one compute.

Task functions defined here (:func:`noop`) are found by name in worker processes: this module
must stay importable (never run as ``__main__``).
"""

from __future__ import annotations

import functools
import importlib.util
import operator
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
from dask import delayed


@dataclass(frozen=True)
class Built:
    """A workload ready to compute: its Dask object and what it is, at the chosen sizes."""

    collection: Any
    description: str
    # Tasks of the graph, where tasks per second is the measure.
    tasks: int | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    # None for a measurement of the engine itself, which computes no Dask object.
    build: Callable[[bool], Built] | None
    # Modules the workload imports beyond Dask and NumPy.
    requires: tuple[str, ...] = ()

    def missing_requirements(self) -> list[str]:
        """The required modules that are not installed: the workload cannot be built."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]


def random_square(seed: int, side: int, chunk: int) -> da.Array:
    return da.random.RandomState(seed).random((side, side), chunks=(chunk, chunk))


def square_sizes(small: bool, reduced: int = 2_000) -> tuple[int, int, str, str]:
    """Side and chunk side of the square workloads, and both as text."""
    side, chunk = (reduced, reduced // 4) if small else (10_000, 1_000)
    return side, chunk, f"{side:,} x {side:,}", f"chunks {chunk:,} x {chunk:,}"


def build_demo(small: bool) -> Built:
    side, chunk, shape, chunks = square_sizes(small)
    return Built(random_square(42, side, chunk).mean(), f"mean of a {shape} random array, {chunks}")


def build_transpose_add(small: bool) -> Built:
    side, chunk, shape, chunks = square_sizes(small)
    x = random_square(42, side, chunk)
    return Built((x + x.T).mean(), f"mean of x + x.T, x a {shape} random array, {chunks}")


def build_gemm(small: bool) -> Built:
    side, chunk, shape, chunks = square_sizes(small, reduced=1_000)
    product = da.matmul(random_square(42, side, chunk), random_square(43, side, chunk))
    return Built(
        product.sum(),
        f"sum of the matrix product of two {shape} random arrays (seeds 42 and 43), {chunks}; "
        f"the sum keeps the {side * side * 8 / 1e6:,.0f} MB product out of the client, whose "
        f"fetch would dominate",
    )


def build_tree(full_count: int, small_count: int, small: bool) -> Built:
    count = small_count if small else full_count
    values = [delayed(number) for number in range(count)]
    while len(values) > 1:
        values = [
            delayed(operator.add)(left, right)
            for left, right in zip(values[::2], values[1::2], strict=True)
        ]
    return Built(values[0], f"pairwise tree of delayed(operator.add) over {count:,} numbers")


def build_tsqr_svd(small: bool) -> Built:
    rows, columns, chunk_rows = (20_000, 50, 2_000) if small else (200_000, 1_000, 10_000)
    x = da.random.RandomState(42).random((rows, columns), chunks=(chunk_rows, columns))
    _, singular_values, _ = da.linalg.svd(x)
    return Built(
        singular_values,
        f"da.linalg.svd (tall-and-skinny QR) of a {rows:,} x {columns:,} random array, chunks "
        f"{chunk_rows:,} x {columns:,}; returns the singular values only (u would bring "
        f"{rows * columns * 8 // 1_000_000:,} MB to the client)",
    )


def build_svd_compressed(small: bool) -> Built:
    side, chunk = (2_000, 500) if small else (10_000, 2_000)
    x = random_square(42, side, chunk)
    _, singular_values, _ = da.linalg.svd_compressed(x, k=5, seed=42)
    return Built(
        singular_values,
        f"da.linalg.svd_compressed(k=5, seed=42) of a {side:,} x {side:,} random array, chunks "
        f"{chunk:,} x {chunk:,}; returns the singular values",
    )


def build_svc_predict(small: bool) -> Built:
    from dask_ml.datasets import make_classification
    from dask_ml.wrappers import ParallelPostFit
    from sklearn.svm import SVC

    samples, chunks, training = (10_000 if small else 800_000), 20, 2_000
    features, labels = make_classification(
        n_samples=samples, n_features=20, chunks=samples // chunks, random_state=42
    )
    # The training set is computed while building, on Dask's sync scheduler (not timed).
    training_features, training_labels = dask.compute(
        features[:training], labels[:training], scheduler="sync"
    )
    model = ParallelPostFit(SVC()).fit(training_features, training_labels)
    return Built(
        model.predict(features),
        f"sklearn SVC fitted on {training:,} samples, predicting {samples:,} samples of 20 "
        f"features in {chunks} chunks with dask_ml's ParallelPostFit (the tasks generate the "
        f"samples with dask_ml.datasets.make_classification)",
    )


def noop(value: Any) -> Any:
    """A task that does nothing."""
    return value


def build_trivial(small: bool) -> Built:
    count, group = (5_000, 100) if small else (100_000, 1_000)
    noops = [delayed(noop)(number) for number in range(count)]
    sums = [delayed(sum)(noops[start : start + group]) for start in range(0, count, group)]
    total = delayed(sum)(sums)
    tasks = len(total.__dask_graph__())
    return Built(
        total,
        f"{count:,} independent no-op tasks, summed in groups of {group:,}, then one sum: "
        f"{tasks:,} tasks, one number back to the client",
        tasks=tasks,
    )


TRIVIAL = "trivial-100000"
ZERO_WORK = "zero-work"
WORKLOADS = (
    Workload("demo", "mean of a 10,000 x 10,000 random array, chunks 1,000 x 1,000", build_demo),
    Workload("transpose-add", "(x + x.T).mean() on the demo's array", build_transpose_add),
    Workload(
        "tree-1024",
        "pairwise tree of delayed(operator.add) over 1,024 numbers",
        functools.partial(build_tree, 1_024, 1_024),
    ),
    Workload(
        "tree-65536",
        "the same tree over 65,536 numbers (4,096 with --small)",
        functools.partial(build_tree, 65_536, 4_096),
    ),
    Workload("gemm", "sum of da.matmul of two 10,000 x 10,000 arrays", build_gemm),
    Workload(
        "tsqr-svd", "singular values of a 200,000 x 1,000 array (da.linalg.svd)", build_tsqr_svd
    ),
    Workload(
        "svd-compressed",
        "singular values of da.linalg.svd_compressed(k=5) of a 10,000 x 10,000 array",
        build_svd_compressed,
    ),
    Workload(
        "svc-predict",
        "SVC prediction of 800,000 samples in 20 chunks with dask_ml's ParallelPostFit",
        build_svc_predict,
        requires=("sklearn", "dask_ml"),
    ),
    Workload(TRIVIAL, "100,000 no-op tasks and a small sum: per-task overhead", build_trivial),
    Workload(
        ZERO_WORK,
        "the engine alone (_core.zero_work) on the trivial graph and on a million tasks; "
        "planner throughput; ingest time",
        None,
    ),
)
WORKLOAD_NAMES = tuple(entry.name for entry in WORKLOADS)
_BY_NAME = {entry.name: entry for entry in WORKLOADS}


def workload(name: str) -> Workload:
    """The catalogue's workload of this name; a ``KeyError`` names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"unknown workload {name!r}; choose from {', '.join(WORKLOAD_NAMES)}"
        ) from None


def synthetic_dependencies(chains: int, length: int, seed: int = 42) -> tuple[list, list[int]]:
    """A graph as dependency lists: ``chains`` chains of ``length`` tasks, each task depending
    on the one before it and (one task in a hundred, seeded) on a task of the previous chain,
    then a pairwise tree that reduces the chains' last tasks to the one output."""
    generator = random.Random(seed)
    dependencies: list[list[int]] = []
    for chain in range(chains):
        start = chain * length
        for position in range(length):
            needed = [start + position - 1] if position else []
            if chain and generator.random() < 0.01:
                needed.append(start - length + generator.randrange(length))
            dependencies.append(needed)
    level = [start + length - 1 for start in range(0, chains * length, length)]
    while len(level) > 1:
        reduced = []
        for left, right in zip(level[::2], level[1::2], strict=False):
            reduced.append(len(dependencies))
            dependencies.append([left, right])
        level = reduced + level[len(reduced) * 2 :]
    return dependencies, level
