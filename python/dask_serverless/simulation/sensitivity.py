"""How a simulated run's time and cost move with the memory size, the concurrency limit, the
store and the cluster's size (how the planner cuts the graph), one setting at a time around
``LambdaCluster``'s defaults, on the ``lambda`` model.

    python -m dask_serverless.simulation.sensitivity [--output docs/simulator]

The workload: a tree reduction of 1,024 values of 8 MB whose tasks compute 100 ms on a full
vCPU (CPU-bound tasks that move data: the memory size moves both their speed and their
bandwidth). Writes ``sensitivity.csv`` and one PNG per setting.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from dask_serverless.simulation import platform_parameters, simulate
from dask_serverless.simulation.paper import tree_reduction

TASK_SECONDS = 0.1
VALUE_BYTES = 8_000_000
DEFAULTS: dict[str, Any] = {
    "memory_mb": 2048,
    "max_concurrency": None,
    "parallelism": 64,
    "batches_per_function": 4,
    "store": "s3",
}
SWEEPS: dict[str, list[Any]] = {
    "memory_mb": [512, 1024, 1769, 3008, 5120, 10240],
    "max_concurrency": [8, 32, 128, 512],
    "store": ["s3", "redis"],
    "parallelism": [16, 64, 256, 1024],
}


def run(collection: Any, setting: dict[str, Any]) -> Any:
    parameters = None
    if setting["store"] == "redis":
        parameters = {"store": platform_parameters("lambda-2020")["store"]}
    return simulate(
        collection,
        "lambda",
        memory_mb=setting["memory_mb"],
        max_concurrency=setting["max_concurrency"],
        parallelism=setting["parallelism"],
        batches_per_function=setting["batches_per_function"],
        parameters=parameters,
        task_costs=lambda key: (TASK_SECONDS, VALUE_BYTES),
    )


def sweep() -> list[dict[str, Any]]:
    collection = tree_reduction(1024)
    rows = []
    for name, values in SWEEPS.items():
        for value in values:
            setting = dict(DEFAULTS, **{name: value})
            report = run(collection, setting)
            rows.append(
                {
                    "varied": name,
                    "value": "none" if value is None else value,
                    "seconds": report.total_seconds,
                    "dollars": report.cost.total,
                    "invocations": report["invocations"],
                    "peak_concurrency": report["peak_concurrency"],
                }
            )
    return rows


def plot(rows: list[dict[str, Any]], output: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name in SWEEPS:
        selected = [row for row in rows if row["varied"] == name]
        labels = [str(row["value"]) for row in selected]
        figure, (time_axes, cost_axes) = plt.subplots(1, 2, figsize=(9, 3.4))
        time_axes.bar(labels, [row["seconds"] for row in selected], color="#4c78a8")
        time_axes.set_title("time (s)")
        cost_axes.bar(labels, [row["dollars"] for row in selected], color="#f58518")
        cost_axes.set_title("cost ($, as AWS would bill it)")
        for axes in (time_axes, cost_axes):
            axes.set_xlabel(name)
        figure.suptitle(f"simulated: tree reduction of 1,024 x 8 MB, 100 ms tasks; {name} varied")
        figure.tight_layout()
        path = output / f"sensitivity-{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dask_serverless.simulation.sensitivity")
    parser.add_argument("--output", type=Path, default=Path("sensitivity"))
    options = parser.parse_args(arguments)
    options.output.mkdir(parents=True, exist_ok=True)
    rows = sweep()
    with open(options.output / "sensitivity.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(
            f"{row['varied']}={row['value']}: {row['seconds']:.2f} s, ${row['dollars']:.5f}, "
            f"{row['invocations']} invocations, peak {row['peak_concurrency']}"
        )
    for path in plot(rows, options.output):
        print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
