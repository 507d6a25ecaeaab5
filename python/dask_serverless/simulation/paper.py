"""Wukong's published experiments (SoCC 2020), simulated: the same workloads on the
``lambda-2020`` model (the paper's setup) and on ``lambda`` (today), beside the paper's figures.

    python -m dask_serverless.simulation.paper [--experiments tree-reduction]

So far: the tree reduction of 1,024 numbers with 0, 100, 250 and 500 ms per task (Wukong's
Figure of its TR workload: about 1.7, 2.9, 4.4 and 6.9 s). Each is simulated with the planner
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
    parser.add_argument("--experiments", default="tree-reduction")
    options = parser.parse_args(arguments)
    for experiment in options.experiments.split(","):
        if experiment != "tree-reduction":
            print(
                f"error: unknown experiment {experiment!r} (known: tree-reduction)", file=sys.stderr
            )
            return 2
        print(markdown(tree_reduction_rows()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
