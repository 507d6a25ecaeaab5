"""Wukong's published experiments (SoCC 2020), simulated: the same workloads on the
``lambda-2020`` model (the paper's setup) and on ``lambda`` (today), beside the paper's figures.

    python -m dask_serverless.simulation.paper [--experiments tree-reduction]

The experiments (``--experiments``, comma-separated):

* ``tree-reduction``: 1,024 numbers with 0, 100, 250 and 500 ms per task (Wukong: about 1.7,
  2.9, 4.4 and 6.9 s), the graph cut for 64 functions of 4 batches (``LambdaCluster``'s
  default), for 512 functions of one batch and for 2,048 (a task per batch, as Wukong);
* ``gemm``: N x N in 2,000 x 2,000 chunks for N = 10,000 and 25,000 (about 13 s and 50-60 s);
* ``svd-compressed``: ``svd_compressed(k=5)`` of N x 100 in 10,000 x 100 chunks up to 8.1 M
  rows (0.4 s at 128 k to 3.3 s at 8.1 M);
* ``square-svd``: the same of N x N in 5,000 x 5,000 chunks up to 256 k (about 88 s);
* ``tsqr``: N x 128 up to 16.7 M rows in chunks of 65,536 rows.

Task costs are measured here on a small array of the same operations and chunks
(:func:`~dask_serverless.simulation.costs_by_prefix`), or come from the arrays' metadata
alone (:mod:`dask_serverless.simulation.arrays`); each row says which, and whether the
simulated runs succeeded.
"""

from __future__ import annotations

import argparse
import operator
import sys
from typing import Any

from dask import delayed

from dask_serverless.simulation import simulate

#: Wukong's published times of the tree reduction, by task duration (seconds).
WUKONG_TREE_REDUCTION = {0.0: 1.7, 0.1: 2.9, 0.25: 4.4, 0.5: 6.9}
#: Wukong's published GEMM times, by N (seconds; 25,000: the middle of its 50-60 s).
WUKONG_GEMM = {10_000: 13.0, 25_000: 55.0}
GEMM_CHUNK = 2_000
#: The paper's functions had 3,008 MB, Lambda's largest size in 2020.
PAPER_MEMORY_MB = 3008
PLANS = ((64, 4), (512, 1), (2048, 1))


#: Instances warm before a "warm" run: more than any of these runs uses at once.
WARM_INSTANCES = 5_000


def predicted(
    collection: Any, model: str, parallelism: int, batches: int, costs: Any, **options: Any
) -> dict:
    """A run's predicted time cold (one warm instance, as a new ``LambdaCluster`` leaves it)
    and warm (every instance warm, as a repeated run finds them), and its cost cold;
    ``options`` go to :func:`simulate` (``chaos=``, say)."""
    reports = [
        simulate(
            collection,
            model,
            memory_mb=PAPER_MEMORY_MB,
            parallelism=parallelism,
            batches_per_function=batches,
            task_costs=costs,
            warm_instances=warm,
            **options,
        )
        for warm in (1, WARM_INSTANCES)
    ]
    cold, warm = reports
    failures = [str(report["failure"]) for report in reports if not report.succeeded]
    return {
        "model": model,
        "plan": f"{parallelism} x {batches}",
        "cold s": cold.total_seconds,
        "warm s": warm.total_seconds,
        "dollars": cold.cost.total,
        "invocations": cold["invocations"],
        "peak concurrency": cold["peak_concurrency"],
        # A run that failed has no time to compare: the table says so instead.
        "outcome": "ok" if not failures else f"failed: {failures[0]}",
    }


def tree_reduction(count: int) -> Any:
    """A pairwise sum of ``count`` numbers, as Wukong's TR workload."""
    return pairwise_sum(
        [
            delayed(operator.add)(number, 0, dask_key_name=f"leaf-{number}")
            for number in range(count)
        ]
    )


def pairwise_sum(values: list[Any]) -> Any:
    """The sum of delayed ``values`` (a power of two of them) as a tree of pairs, level by
    level (keys ``add-LEVEL-INDEX``)."""
    level = 0
    while len(values) > 1:
        level += 1
        values = [
            delayed(operator.add)(left, right, dask_key_name=f"add-{level}-{index}")
            for index, (left, right) in enumerate(zip(values[::2], values[1::2], strict=True))
        ]
    return values[0]


def tree_reduction_rows() -> list[dict[str, Any]]:
    total = tree_reduction(1024)
    rows = []
    for delay, published in WUKONG_TREE_REDUCTION.items():
        for model in ("lambda-2020", "lambda"):
            for parallelism, batches in PLANS:
                row: dict[str, Any] = {"task ms": int(delay * 1000), "Wukong s": published}
                row.update(
                    predicted(total, model, parallelism, batches, lambda key, d=delay: (d, 8))
                )
                rows.append(row)
    return rows


def gemm(size: int) -> Any:
    """The sum of the product of two random ``size`` x ``size`` arrays in the paper's chunks
    (summed, so that the client fetches a number, not the product)."""
    import dask.array as da

    state = da.random.RandomState(0)
    left = state.random((size, size), chunks=(GEMM_CHUNK, GEMM_CHUNK))
    right = state.random((size, size), chunks=(GEMM_CHUNK, GEMM_CHUNK))
    return (left @ right).sum()


def measured_costs(build: Any, sizes: tuple[int, ...], unknown: str = "error") -> Any:
    """Costs by prefix of ``build(size)`` for each of ``sizes``, each computed twice on a
    ``LocalCluster`` here (the second run, warm, is kept)."""
    import dask

    from dask_serverless import LocalCluster
    from dask_serverless.simulation import costs_by_prefix

    reports = []
    with LocalCluster() as cluster:
        for size in sizes:
            small = build(size)
            dask.compute(small, scheduler=cluster.get)
            dask.compute(small, scheduler=cluster.get)
            reports.append(cluster.last_run)
    return costs_by_prefix(*reports, unknown=unknown)


def paper_rows(
    label: str,
    build: Any,
    published: dict[int, float],
    sizes: tuple[int, ...],
    costs: Any,
    plans: tuple[tuple[int, int], ...],
) -> list[dict[str, Any]]:
    """One row per size, model and plan: the predictions beside Wukong's figure (``nan``
    where it published none); with ``estimated stages`` when measured costs left some to the
    median, ``costs`` naming where the costs came from when they came from metadata."""
    rows = []
    for size in sizes:
        collection = build(size)
        for model in ("lambda-2020", "lambda"):
            for parallelism, batches in plans:
                row: dict[str, Any] = {label: size, "Wukong s": published.get(size, float("nan"))}
                row["costs"] = costs if isinstance(costs, str) else "measured"
                row.update(predicted(collection, model, parallelism, batches, costs))
                if getattr(costs, "unknown", None) == "median":
                    row["estimated stages"] = ", ".join(sorted(costs.estimated)) or "none"
                rows.append(row)
    return rows


def gemm_rows(measured_size: int = 4_000) -> list[dict[str, Any]]:
    """GEMM at the paper's sizes, task costs measured on ``measured_size`` here."""
    costs = measured_costs(gemm, (measured_size,))
    return paper_rows("N", gemm, WUKONG_GEMM, tuple(WUKONG_GEMM), costs, ((64, 4), (512, 1)))


#: Wukong's published svd_compressed (k=5) times of N x 100 arrays in 10,000 x 100 chunks:
#: 0.4 s at 128 k rows to 3.3 s at 8.1 M (the ends of its figure).
WUKONG_SVD_COMPRESSED = {128_000: 0.4, 8_100_000: 3.3}
SVD_CHUNK_ROWS = 10_000


def svd_compressed(rows: int) -> Any:
    """The singular values of ``svd_compressed(k=5)`` of a random ``rows`` x 100 array."""
    import dask.array as da

    x = da.random.RandomState(0).random((rows, 100), chunks=(SVD_CHUNK_ROWS, 100))
    _, singular, _ = da.linalg.svd_compressed(x, k=5, seed=0)
    return singular


def svd_compressed_rows(measured: tuple[int, ...] = (128_000, 1_280_000)) -> list[dict[str, Any]]:
    """svd_compressed at the paper's sizes, task costs measured here on the ``measured`` row
    counts (Dask's TSQR has stages that only a few chunks, or only many, have)."""
    # 8.1 M rows add a stage (``dot``) that no size measured here has: it costs the median
    # measured task, and the table says so.
    costs = measured_costs(svd_compressed, measured, unknown="median")
    sizes = (128_000, 1_024_000, 8_100_000)
    return paper_rows("rows", svd_compressed, WUKONG_SVD_COMPRESSED, sizes, costs, ((512, 1),))


#: Wukong's published time of the SVD of a 256 k x 256 k array in 5,000 x 5,000 chunks.
WUKONG_SQUARE_SVD = {256_000: 88.0}
SQUARE_CHUNK = 5_000


def square_svd(size: int) -> Any:
    """The singular values of ``svd_compressed(k=5)`` of a random ``size`` x ``size`` array
    in the paper's chunks (Dask's exact SVD takes tall-and-skinny arrays only)."""
    import dask.array as da

    x = da.random.RandomState(0).random((size, size), chunks=(SQUARE_CHUNK, SQUARE_CHUNK))
    _, singular, _ = da.linalg.svd_compressed(x, k=5, seed=0)
    return singular


def square_svd_rows() -> list[dict[str, Any]]:
    """The square SVD at 50 k, 100 k and the paper's 256 k, task costs from the arrays'
    metadata (costs by prefix mix a block's product with small aggregations under ``sum``)."""
    sizes = (50_000, 100_000, 256_000)
    return paper_rows("N", square_svd, WUKONG_SQUARE_SVD, sizes, "metadata", ((512, 1),))


#: TSQR of N x 128 arrays up to 16.7 M rows (2^24), as Wukong's TSQR experiment, in chunks of
#: 65,536 rows (64 MB; the chunking is ours: only the sizes are Wukong's).
TSQR_SIZES = (524_288, 2_097_152, 8_388_608, 16_777_216)
TSQR_CHUNK_ROWS = 65_536


def tsqr(rows: int) -> Any:
    """Dask's TSQR of a random ``rows`` x 128 array: Q and R both computed (summed, so that
    the client fetches two numbers, not Q)."""
    import dask.array as da

    x = da.random.RandomState(0).random((rows, 128), chunks=(TSQR_CHUNK_ROWS, 128))
    q, r = da.linalg.tsqr(x)
    return q.sum() + r.sum()


def tsqr_rows(measured: tuple[int, ...] = (262_144,)) -> list[dict[str, Any]]:
    """TSQR at the paper's sizes, twice: task costs measured here on ``measured`` rows (the
    same chunks), and from the arrays' metadata alone."""
    costs = measured_costs(tsqr, measured, unknown="median")
    plans = ((512, 1),)
    return paper_rows("rows", tsqr, {}, TSQR_SIZES, costs, plans) + paper_rows(
        "rows", tsqr, {}, TSQR_SIZES, "metadata", plans
    )


EXPERIMENTS = {
    "tree-reduction": tree_reduction_rows,
    "gemm": gemm_rows,
    "svd-compressed": svd_compressed_rows,
    "square-svd": square_svd_rows,
    "tsqr": tsqr_rows,
}


def markdown(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [
            f"{value:.6f}" if name == "dollars" else f"{value:.2f}" if isinstance(value, float)
            else str(value)
            for name, value in row.items()
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dask_serverless.simulation.paper")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    options = parser.parse_args(arguments)
    for experiment in options.experiments.split(","):
        if experiment not in EXPERIMENTS:
            known = ", ".join(EXPERIMENTS)
            print(f"error: unknown experiment {experiment!r} (known: {known})", file=sys.stderr)
            return 2
        print(f"## {experiment}\n")
        print(markdown(EXPERIMENTS[experiment]()) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
