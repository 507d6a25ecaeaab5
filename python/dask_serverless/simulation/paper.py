"""Wukong's published experiments (SoCC 2020), simulated: the same workloads on the
``lambda-2020`` model (the paper's setup) and on ``lambda`` (today), beside the paper's figures.

    python -m dask_serverless.simulation.paper [--experiments tree-reduction]

So far: the tree reduction of 1,024 numbers with 0, 100, 250 and 500 ms per task (Wukong's
Figure of its TR workload: about 1.7, 2.9, 4.4 and 6.9 s), and GEMM of N x N arrays in
2,000 x 2,000 chunks for N = 10,000 and 25,000 (about 13 s and 50-60 s), its task costs
measured here on N = 4,000 (the same operations on the same chunks) with
:func:`~dask_serverless.simulation.costs_by_prefix`. Each is simulated with the planner
cut for 64 functions of 4 batches (``LambdaCluster``'s default), for 512 functions of one batch,
and for 2,048 (a task per batch, as Wukong schedules them); the table keeps all three.
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


def tree_reduction(count: int) -> Any:
    """A pairwise sum of ``count`` numbers, as Wukong's TR workload."""
    values = [
        delayed(operator.add)(number, 0, dask_key_name=f"leaf-{number}") for number in range(count)
    ]
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
            for parallelism, batches_per_function in PLANS:
                report = simulate(
                    total,
                    model,
                    memory_mb=PAPER_MEMORY_MB,
                    parallelism=parallelism,
                    batches_per_function=batches_per_function,
                    task_costs=lambda key, delay=delay: (delay, 8),
                )
                rows.append(
                    {
                        "task ms": int(delay * 1000),
                        "Wukong s": published,
                        "model": model,
                        "plan": f"{parallelism} x {batches_per_function}",
                        "predicted s": report.total_seconds,
                        "dollars": report.cost.total,
                        "invocations": report["invocations"],
                        "peak concurrency": report["peak_concurrency"],
                    }
                )
    return rows


def gemm(size: int) -> Any:
    """The sum of the product of two random ``size`` x ``size`` arrays in the paper's chunks
    (summed, so that the client fetches a number, not the product)."""
    import dask.array as da

    state = da.random.RandomState(0)
    left = state.random((size, size), chunks=(GEMM_CHUNK, GEMM_CHUNK))
    right = state.random((size, size), chunks=(GEMM_CHUNK, GEMM_CHUNK))
    return (left @ right).sum()


def gemm_rows(measured_size: int = 4_000) -> list[dict[str, Any]]:
    """GEMM at the paper's sizes, task costs measured on ``measured_size`` here."""
    import dask

    from dask_serverless import LocalCluster
    from dask_serverless.simulation import costs_by_prefix

    small = gemm(measured_size)
    with LocalCluster() as cluster:
        dask.compute(small, scheduler=cluster.get)
        dask.compute(small, scheduler=cluster.get)
        costs = costs_by_prefix(cluster.last_run)
    rows = []
    for size, published in WUKONG_GEMM.items():
        collection = gemm(size)
        for model in ("lambda-2020", "lambda"):
            for parallelism, batches_per_function in ((64, 4), (512, 1)):
                report = simulate(
                    collection,
                    model,
                    memory_mb=PAPER_MEMORY_MB,
                    parallelism=parallelism,
                    batches_per_function=batches_per_function,
                    task_costs=costs,
                )
                rows.append(
                    {
                        "N": size,
                        "Wukong s": published,
                        "model": model,
                        "plan": f"{parallelism} x {batches_per_function}",
                        "predicted s": report.total_seconds,
                        "dollars": report.cost.total,
                        "invocations": report["invocations"],
                        "peak concurrency": report["peak_concurrency"],
                    }
                )
    return rows


EXPERIMENTS = {"tree-reduction": tree_reduction_rows, "gemm": gemm_rows}


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
