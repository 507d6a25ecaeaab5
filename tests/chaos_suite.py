"""The chaos suite: many computes under injected faults, each result compared with Dask's
``sync`` scheduler (``make chaos``; docs/reliability.md, "The chaos suite").

For each fault class alone, and all together, a ``LocalCluster(chaos=..., chaos_seed=...)``
computes random delayed graphs (built from a seeded generator) and the seed workloads at small
size. Each compute must return ``sync``'s result, within 3 times its fault-free time plus the
retry delays (else it counts as a hang); after each class, nothing may be left: no store
object, no worker process, no shared-memory directory. The table printed at the end has one
row per class: rate, computes, wrong results, hangs, leftovers, injected faults (from the
fault log every process appends to) and the time against the fault-free row.

With ``--platform lambda`` the same computes run on a ``LambdaCluster`` against the local
AWS-compatible endpoint (started per class, as the end-to-end tests do; its functions append to
the same fault log), for the classes Lambda can suffer from a client's point of view (kill,
duplicate, and both together, by default). After each class the account itself must be empty:
no function, role, queue, bucket, log group or tagged resource left.

    python tests/chaos_suite.py                  # 200 random graphs per class
    python tests/chaos_suite.py --graphs 20      # shorter
    python tests/chaos_suite.py --platform lambda --graphs 20
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import dask
from dask import delayed

from dask_serverless import LambdaCluster, LocalCluster
from dask_serverless._base import ServerlessCluster
from dask_serverless.benchmark.checking import compare
from dask_serverless.benchmark.workloads import build_demo, build_gemm, build_transpose_add

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aws_endpoint import CREDENTIALS, aws_endpoint  # noqa: E402

# A Lambda cluster's functions cannot import this module (a test helper, not installed): its
# tasks travel by value, also when the module is imported (by tests/test_chaos.py).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

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
    ("kill+duplicate", "kill=0.05,duplicate=0.05"),
]
#: The classes each platform runs unless ``--classes`` says otherwise.
DEFAULT_CLASSES = {
    "local": ["none", "kill", "duplicate", "throttle", "straggle", "store", "cold", "all"],
    "lambda": ["none", "kill", "duplicate", "kill+duplicate"],
}
#: The endpoint runs handlers with its own interpreter, this machine's Python.
ENDPOINT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
REGION = "us-east-1"
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


def account_leftovers(url: str) -> list[str]:
    """Everything in the endpoint's account that a cluster may create: functions, roles,
    queues, buckets (and their objects), log groups, and anything tagged by dask-serverless."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=url, region_name=REGION)

    found = [
        f"function {function['FunctionName']}"
        for function in client("lambda").list_functions()["Functions"]
    ]
    found += [f"role {role['RoleName']}" for role in client("iam").list_roles()["Roles"]]
    found += [f"queue {queue}" for queue in client("sqs").list_queues().get("QueueUrls", [])]
    s3 = client("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        objects = s3.list_objects_v2(Bucket=bucket["Name"]).get("KeyCount", 0)
        found.append(f"bucket {bucket['Name']} ({objects} objects)")
    found += [
        f"log group {group['logGroupName']}"
        for group in client("logs").describe_log_groups()["logGroups"]
    ]
    tagged = client("resourcegroupstaggingapi").get_resources(
        TagFilters=[{"Key": "dask-serverless:created-by"}]
    )
    found += [f"tagged {mapping['ResourceARN']}" for mapping in tagged["ResourceTagMappingList"]]
    return found


@contextlib.contextmanager
def _credentials() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def platform_cluster(
    platform: str, spec: str, seed: int, concurrency: int, row: Row
) -> Iterator[ServerlessCluster]:
    """A running cluster of ``platform`` with the class's faults; on the way out, what it left
    (beyond its store's objects, counted by the caller) is added to ``row.leftovers``."""
    if platform == "local":
        processes_before = _worker_processes(sys.executable)
        cluster = LocalCluster(
            max_concurrency=concurrency,
            batches_per_function=2,
            timeout_s=60,
            chaos=spec or None,
            chaos_seed=seed,
        )
        with cluster:
            store_root = cluster._store_root
            yield cluster
        time.sleep(1.0)
        processes = _worker_processes(sys.executable) - processes_before
        if processes:
            row.leftovers.append(f"{len(processes)} worker processes")
        # The cluster's own shared-memory store (other clients on the machine are not ours).
        if store_root is not None and os.path.exists(store_root):
            row.leftovers.append(f"shared memory {store_root}")
        return
    # A fresh endpoint per class: its functions inherit the fault log named in this process's
    # environment, and its account starts empty.
    with _credentials(), aws_endpoint() as url:
        lambda_cluster = LambdaCluster(
            region=REGION,
            endpoint_url=url,
            memory_mb=1024,
            timeout_s=60,
            parallelism=concurrency,
            batches_per_function=2,
            python_version=ENDPOINT_PYTHON,
            chaos=spec or None,
            chaos_seed=seed,
        )
        with lambda_cluster:
            yield lambda_cluster
        row.leftovers += [f"in the account: {found}" for found in account_leftovers(url)]


def _store_leftovers(cluster: ServerlessCluster) -> list[str]:
    """The store's objects, but for a Lambda cluster's deployment package (which its bucket
    holds until the cluster closes)."""
    store = cluster._store
    if store is None:
        return []
    return [key for key in store.list("") if not key.startswith("deployment/")]


def run_class(
    name: str,
    spec: str,
    graphs: int,
    seed: int,
    limits: dict[str, float],
    concurrency: int,
    platform: str = "local",
) -> Row:
    row = Row(name, spec)
    log = Path(tempfile.mkdtemp(prefix="chaos-log-")) / "faults"
    os.environ["DASK_SERVERLESS_CHAOS_LOG"] = str(log)
    jobs: list[tuple[str, Callable[[], Any]]] = [
        (f"graph-{index}", lambda index=index: random_graph(seed * 100_000 + index))
        for index in range(graphs)
    ] + workloads()
    started = time.monotonic()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    hung = False
    labels: dict[str, str] = {}
    with platform_cluster(platform, spec, seed, concurrency, row) as cluster:
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
        left = _store_leftovers(cluster) if not hung else []
        if left:
            computes = sorted({labels.get(key.split("/", 1)[0], "?") for key in left})
            row.leftovers.append(
                f"{len(left)} store objects of {', '.join(computes)}, e.g. {left[:3]}"
            )
    row.seconds = time.monotonic() - started
    executor.shutdown(wait=not hung, cancel_futures=True)
    if log.exists():
        for line in log.read_text().splitlines():
            row.faults[line.split(" ", 1)[0]] += 1
    return row


def print_table(rows: list[Row]) -> None:
    baseline = next((row.seconds for row in rows if row.name == "none"), None)
    header = (
        f"{'fault class':<14} {'spec':<52} {'computes':>8} {'wrong':>5} {'hangs':>5} "
        f"{'failed':>6} {'leftovers':>9} {'time':>7} {'overhead':>8}  injected faults"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        overhead = f"{row.seconds / baseline - 1:+.0%}" if baseline else "-"
        faults = ", ".join(f"{fault} {count}" for fault, count in sorted(row.faults.items()))
        print(
            f"{row.name:<14} {row.spec or '-':<52} {row.computes:>8} {row.wrong:>5} "
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
    parser.add_argument(
        "--concurrency", type=int, default=4, help="max_concurrency (local), parallelism (lambda)"
    )
    parser.add_argument(
        "--platform",
        choices=sorted(DEFAULT_CLASSES),
        default="local",
        help="LocalCluster, or LambdaCluster on the local AWS-compatible endpoint",
    )
    parser.add_argument(
        "--classes", nargs="*", help="only these classes (names of the first column)"
    )
    options = parser.parse_args(arguments)
    wanted = options.classes or DEFAULT_CLASSES[options.platform]
    unknown = set(wanted) - {name for name, _ in CLASSES}
    if unknown:
        parser.error(f"unknown classes {sorted(unknown)}: choose among {[n for n, _ in CLASSES]}")
    chosen = [(name, spec) for name, spec in CLASSES if name in wanted or name == "none"]
    limits: dict[str, float] = {}
    rows = []
    print(f"platform {options.platform}, seed {options.seed}, {options.graphs} graphs per class")
    for name, spec in chosen:
        row = run_class(
            name,
            spec,
            options.graphs,
            options.seed,
            limits,
            options.concurrency,
            options.platform,
        )
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
