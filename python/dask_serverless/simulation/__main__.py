"""``dask-serverless estimate``: a compute's time and cost from the simulator, before running
it. The workload is a seed workload's name (the benchmark's catalogue) or a Python file that
defines ``collection`` (a Dask collection, or a function returning one)."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path
from typing import Any

from dask_serverless.errors import ConfigurationError
from dask_serverless.simulation import PLATFORMS, simulate


def parse_arguments(arguments: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dask-serverless estimate",
        description="Predict a compute's time and cost with the simulator, before running it.",
    )
    parser.add_argument(
        "workload", help="a seed workload's name (dask-serverless bench --list) or a .py file"
    )
    parser.add_argument("--platform", default="lambda", choices=PLATFORMS)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--max-concurrency", type=int)
    parser.add_argument("--parallelism", type=int)
    parser.add_argument("--small", action="store_true", help="the workload's small size")
    parser.add_argument(
        "--task-costs",
        choices=("metadata", "constant"),
        help="what tasks cost: from an array's metadata (the default for arrays) or a "
        "constant (the default otherwise)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chaos", help="faults to inject, as LocalCluster(chaos=...)")
    parser.add_argument("--html", type=Path, help="also write the simulated run's page here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(arguments)


def load_collection(workload: str, small: bool) -> tuple[str, Any]:
    """The named workload's collection, or the one a Python file defines."""
    if workload.endswith(".py"):
        path = Path(workload)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {workload}")
        namespace = runpy.run_path(str(path))
        collection = namespace.get("collection")
        if collection is None:
            raise ConfigurationError(
                f"{workload} defines no `collection` (a Dask collection, or a function "
                "returning one)"
            )
        if callable(collection) and not hasattr(collection, "__dask_graph__"):
            collection = collection()
        return path.name, collection
    from dask_serverless.experiments.grid import resolve_workload

    resolved = resolve_workload(workload, small)
    return resolved.name, resolved.build().collection


def main(arguments: list[str] | None = None) -> int:
    options = parse_arguments(arguments)
    try:
        name, collection = load_collection(options.workload, options.small)
        started = time.perf_counter()
        report = simulate(
            collection,
            options.platform,
            memory_mb=options.memory_mb,
            max_concurrency=options.max_concurrency,
            parallelism=options.parallelism,
            task_costs=options.task_costs,
            seed=options.seed,
            chaos=options.chaos,
        )
        took = time.perf_counter() - started
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if options.json:
        print(json.dumps({**report.to_dict(), "simulation_seconds": took}, default=str))
    else:
        print(
            f"{name}: {report['tasks']:,} tasks in {report['batches']:,} batches on "
            f"{options.platform} at {options.memory_mb} MB: {report.total_seconds:.2f} s, "
            f"${report.cost.total:.6f} (simulated in {took:.2f} s)"
        )
        print(
            f"  peak concurrency {report['peak_concurrency']}, {report['cold_starts']} cold "
            f"starts, {report['invocations']} invocations, critical path of "
            f"{len(report['critical_path'])} batches"
        )
        print("  " + repr(report.cost).replace("\n", "\n  "))
    if options.html is not None:
        report.save_html(options.html)
        print(f"  page: {options.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
