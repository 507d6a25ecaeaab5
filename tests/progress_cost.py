"""What streaming progress costs: one long batch of tiny tasks, with and without it.

Functions send the tasks they finished every ``handler.PROGRESS_SECONDS`` while a batch runs, so
a progress bar moves task by task. This measures the price on the worst case, a batch of tens of
thousands of tasks that do nothing: the same compute with streaming as shipped, and with
streaming switched off in the workers (a ``sitecustomize`` on their path sets the interval to a
day, so everything travels in the batch's final report, as before streaming existed). Runs
alternate between the two, and the medians are compared.

    .venv/bin/python tests/progress_cost.py [--tasks 50000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from dask import delayed

from dask_serverless import LocalCluster

SITECUSTOMIZE = """
import dask_serverless.handler as handler
handler.PROGRESS_SECONDS = 86400.0
"""


def inc(value: int) -> int:
    return value + 1


def add(left: int, right: int) -> int:
    return left + right


def graph(tasks: int):
    """About ``tasks`` tasks: ``tasks / 2`` leaves summed pairwise, so that values mostly stay
    in the function that made them (the cost measured is the engine's, not the store's)."""
    level = [delayed(inc)(number) for number in range(tasks // 2)]
    while len(level) > 1:
        pairs = [level[index : index + 2] for index in range(0, len(level), 2)]
        level = [delayed(add)(*pair) if len(pair) == 2 else pair[0] for pair in pairs]
    return level[0]


def timed(cluster: LocalCluster, collection, tasks: int) -> tuple[float, int]:
    """Seconds of one compute, and the batches it was cut into."""
    started = time.perf_counter()
    result = collection.compute(scheduler=cluster.get)
    elapsed = time.perf_counter() - started
    assert result == sum(range(1, tasks // 2 + 1)), result
    return elapsed, cluster.last_run["batches"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=7)
    arguments = parser.parse_args()
    quiet = tempfile.mkdtemp(prefix="progress-off-")
    with open(os.path.join(quiet, "sitecustomize.py"), "w") as file:
        file.write(SITECUSTOMIZE)
    # One function, one batch of everything: the longest batch the planner makes.
    options = dict(max_concurrency=1, batches_per_function=1, threads_per_function=1)
    with LocalCluster(**options) as streaming:
        sys.path.insert(0, quiet)
        try:
            silent = LocalCluster(**options)
        finally:
            sys.path.remove(quiet)
        with silent:
            collection = graph(arguments.tasks)
            for cluster in (streaming, silent):
                timed(cluster, collection, arguments.tasks)  # warm-up: imports, first batch
            times: dict[str, list[float]] = {"streaming": [], "final report only": []}
            for _ in range(arguments.runs):
                for name, cluster in (("streaming", streaming), ("final report only", silent)):
                    elapsed, batches = timed(cluster, collection, arguments.tasks)
                    times[name].append(elapsed)
    on = statistics.median(times["streaming"])
    off = statistics.median(times["final report only"])
    print(f"{arguments.tasks} tasks in {batches} batch(es), median of {arguments.runs} runs:")
    print(f"  streaming progress:  {on:.3f} s  {sorted(round(t, 3) for t in times['streaming'])}")
    print(
        f"  final report only:   {off:.3f} s  "
        f"{sorted(round(t, 3) for t in times['final report only'])}"
    )
    print(f"  cost of streaming:   {100 * (on - off) / off:+.1f}%")


if __name__ == "__main__":
    main()
