"""The chaos suite: many computes under injected faults, each result compared with Dask's
``sync`` scheduler (``make chaos``; docs/reliability.md, "The chaos suite").

For each fault class alone, and all together, a ``LocalCluster(chaos=..., chaos_seed=...)``
computes random delayed graphs (built from a seeded generator) and the seed workloads at small
size. Each compute must return ``sync``'s result, within 3 times its fault-free time plus the
retry delays (else it counts as a hang); after each class, nothing may be left: no store
object, no worker process, no shared-memory directory. The table printed at the end has one
row per class: rate, computes, wrong results, hangs, leftovers, injected faults (from the
fault log every process appends to) and the time against the fault-free row.

    python tests/chaos_suite.py                  # 200 random graphs per class
    python tests/chaos_suite.py --graphs 20      # shorter
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from dask import delayed

from dask_serverless import LocalCluster
from dask_serverless.benchmark.checking import compare
from dask_serverless.benchmark.workloads import build_demo, build_gemm, build_transpose_add

#: Each fault class alone at the rate of the goal, and all together.
CLASSES: list[tuple[str, str]] = [
    ("none", ""),
    ("kill", "kill=0.05"),
    ("duplicate", "duplicate=0.05"),
    ("throttle", "throttle=0.2"),
    ("straggle", "straggle=0.01"),
    ("store", "store=0.05,latency=0.05"),
    ("cold", "cold=0.05"),
    ("all", "kill=0.05,duplicate=0.05,throttle=0.2,straggle=0.01"),
]
#: Allowed on top of 3 times the fault-free time: retries' backoff, late duplicates, a
#: recovery's silence.
RETRY_ALLOWANCE_S = 20.0


def _combine(index: int, *inputs: int) -> int:
    total = index + 1
    for position, value in enumerate(inputs):
        total = (total * 31 + value * (position + 7)) % 1_000_003
    return total


def random_graph(seed: int) -> list[Any]:
    """A random DAG of delayed tasks (5 to 60 tasks, up to 4 parents each); its sinks."""
    generator = random.Random(seed)
    count = generator.randint(5, 60)
    nodes: list[Any] = []
    has_children: set[int] = set()
    for index in range(count):
        parents = (
            generator.sample(range(index), min(index, generator.randint(0, 4))) if index else []
        )
        has_children.update(parents)
        nodes.append(delayed(_combine, pure=True)(index, *[nodes[parent] for parent in parents]))
    return [node for index, node in enumerate(nodes) if index not in has_children]


def workloads() -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("demo", lambda: build_demo(True).collection),
        ("transpose_add", lambda: build_transpose_add(True).collection),
        ("gemm", lambda: build_gemm(True).collection),
    ]


@dataclass
class Row:
    name: str
    spec: str
    computes: int = 0
    wrong: int = 0
    hangs: int = 0
    failed: int = 0
    leftovers: list[str] = field(default_factory=list)
    faults: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _worker_processes(python: str) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].decode(errors="replace") == python and b"awslambdaric" in command:
            found.add(int(entry.name))
    return found


def run_class(
    name: str,
    spec: str,
    graphs: int,
    seed: int,
    limits: dict[str, float],
    concurrency: int,
) -> Row:
    row = Row(name, spec)
    log = Path(tempfile.mkdtemp(prefix="chaos-log-")) / "faults"
    os.environ["DASK_SERVERLESS_CHAOS_LOG"] = str(log)
    processes_before = _worker_processes(sys.executable)
    jobs: list[tuple[str, Callable[[], Any]]] = [
        (f"graph-{index}", lambda index=index: random_graph(seed * 100_000 + index))
        for index in range(graphs)
    ] + workloads()
    started = time.monotonic()
    cluster = LocalCluster(
        max_concurrency=concurrency,
        batches_per_function=2,
        timeout_s=60,
        chaos=spec or None,
        chaos_seed=seed,
    )
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    hung = False
    labels: dict[str, str] = {}
    with cluster:
        store_root = cluster._store_root
        for label, build in jobs:
            collection = build()
            expected = dask.compute(collection, scheduler="sync")[0]
            limit = 3 * limits.get(label, 5.0) + RETRY_ALLOWANCE_S
            compute_started = time.monotonic()
            future = executor.submit(dask.compute, collection, scheduler=cluster.get)
            row.computes += 1
            try:
                actual = future.result(timeout=limit)[0]
            except concurrent.futures.TimeoutError:
                row.hangs += 1
                row.notes.append(f"{label}: not done after {limit:.0f} s")
                hung = True
                break
            except Exception as error:  # noqa: BLE001 - counted and reported
                row.failed += 1
                row.notes.append(f"{label}: {type(error).__name__}: {str(error)[:200]}")
                continue
            labels[cluster.last_run.get("run_id", "")] = label
            if name == "none":
                limits[label] = time.monotonic() - compute_started
            if compare(expected, actual).failed:
                row.wrong += 1
                row.notes.append(f"{label}: wrong result")
        # Late duplicates arrive up to 2 s after their original.
        time.sleep(3.0)
        store = cluster._store
        left = store.list("") if store is not None and not hung else []
        if left:
            computes = sorted({labels.get(key.split("/", 1)[0], "?") for key in left})
            row.leftovers.append(
                f"{len(left)} store objects of {', '.join(computes)}, e.g. {left[:3]}"
            )
    row.seconds = time.monotonic() - started
    executor.shutdown(wait=not hung, cancel_futures=True)
    time.sleep(1.0)
    processes = _worker_processes(sys.executable) - processes_before
    if processes:
        row.leftovers.append(f"{len(processes)} worker processes")
    # The cluster's own shared-memory store (other clients on the machine are not ours).
    if store_root is not None and os.path.exists(store_root):
        row.leftovers.append(f"shared memory {store_root}")
    if log.exists():
        for line in log.read_text().splitlines():
            row.faults[line.split(" ", 1)[0]] += 1
    return row


def print_table(rows: list[Row]) -> None:
    baseline = next((row.seconds for row in rows if row.name == "none"), None)
    header = (
        f"{'fault class':<11} {'spec':<52} {'computes':>8} {'wrong':>5} {'hangs':>5} "
        f"{'failed':>6} {'leftovers':>9} {'time':>7} {'overhead':>8}  injected faults"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        overhead = f"{row.seconds / baseline - 1:+.0%}" if baseline else "-"
        faults = ", ".join(f"{fault} {count}" for fault, count in sorted(row.faults.items()))
        print(
            f"{row.name:<11} {row.spec or '-':<52} {row.computes:>8} {row.wrong:>5} "
            f"{row.hangs:>5} {row.failed:>6} {len(row.leftovers):>9} {row.seconds:>6.1f}s "
            f"{overhead:>8}  {faults or '-'}"
        )
    for row in rows:
        for note in row.notes + row.leftovers:
            print(f"  {row.name}: {note}")


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=200, help="random graphs per class")
    parser.add_argument("--seed", type=int, default=1, help="seed of graphs and faults")
    parser.add_argument("--concurrency", type=int, default=4, help="max_concurrency")
    parser.add_argument(
        "--classes", nargs="*", help="only these classes (names of the first column)"
    )
    options = parser.parse_args(arguments)
    chosen = [
        (name, spec)
        for name, spec in CLASSES
        if not options.classes or name in options.classes or name == "none"
    ]
    limits: dict[str, float] = {}
    rows = []
    for name, spec in chosen:
        row = run_class(name, spec, options.graphs, options.seed, limits, options.concurrency)
        rows.append(row)
        print(
            f"{name}: {row.computes} computes, {row.wrong} wrong, {row.hangs} hangs, "
            f"{row.failed} failed, {len(row.leftovers)} leftovers, {row.seconds:.1f} s",
            flush=True,
        )
    print()
    print_table(rows)
    bad = sum(row.wrong + row.hangs + row.failed + len(row.leftovers) for row in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
