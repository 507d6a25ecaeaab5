"""The command line of the harness: ``python -m dask_serverless.bench`` (or
``python -m dask_serverless.benchmark``, ``make bench``, ``dask-serverless bench``).

:func:`main` parses the options, prints the machine, starts the schedulers once, builds and
measures each chosen workload in turn (building is not timed), then prints the targets and
writes the CSV and, with ``--markdown``, the report. Ctrl-C closes the clusters and still
writes what was measured. The exit status is 1 when a result was wrong or a compute failed,
130 after Ctrl-C, 0 otherwise: timings never fail the run.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from dask_serverless.benchmark.engine import measure_engine
from dask_serverless.benchmark.measuring import (
    REFERENCE,
    SCHEDULER_NAMES,
    EngineResult,
    Measurements,
    Session,
    WorkloadResult,
    measure_workload,
    open_schedulers,
)
from dask_serverless.benchmark.report import (
    describe_machine,
    header_lines,
    print_workload,
    write_csv,
    write_markdown,
)
from dask_serverless.benchmark.targets import evaluate_targets
from dask_serverless.benchmark.workloads import (
    TRIVIAL,
    WORKLOAD_NAMES,
    WORKLOADS,
    Built,
    Workload,
    build_trivial,
)

# The command the documentation and the reports name.
COMMAND = "python -m dask_serverless.bench"


def names_list(known: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(known)}"
            )
        return names

    return parse


def skip_pairs(text: str) -> set[tuple[str, str]]:
    pairs = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        scheduler, _, workload = item.partition(":")
        if scheduler not in SCHEDULER_NAMES or workload not in WORKLOAD_NAMES:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not scheduler:workload with a scheduler of "
                f"{', '.join(SCHEDULER_NAMES)} and a workload of {', '.join(WORKLOAD_NAMES)}"
            )
        pairs.add((scheduler, workload))
    return pairs


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Benchmark dask-serverless's LocalCluster against Dask's schedulers.",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per scheduler (default 3)")
    parser.add_argument("--small", action="store_true", help="small sizes, for a quick check")
    parser.add_argument(
        "--workloads",
        type=names_list(WORKLOAD_NAMES),
        default=list(WORKLOAD_NAMES),
        help="comma-separated workloads (default: all; --list names them)",
    )
    parser.add_argument(
        "--schedulers",
        type=names_list(SCHEDULER_NAMES),
        default=list(SCHEDULER_NAMES),
        help=f"comma-separated schedulers to time (default: {','.join(SCHEDULER_NAMES)}); "
        f"{REFERENCE} always computes the reference",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path("bench-results") / "bench-results.csv",
        help="results file (default %(default)s; bench-results/ is ignored by git)",
    )
    parser.add_argument(
        "--skip",
        type=skip_pairs,
        default=set(),
        help="comma-separated scheduler:workload pairs not to time, e.g. "
        "distributed:tree-65536 (the reference still computes)",
    )
    parser.add_argument("--markdown", type=Path, help="also write a Markdown report here")
    parser.add_argument("--list", action="store_true", help="list the workloads and stop")
    options = parser.parse_args(argv)
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    return options


def run_workloads(
    workloads: Sequence[Workload],
    session: Session,
    small: bool,
    runs: int,
    skipped: Collection[tuple[str, str]] = frozenset(),
) -> Iterator[WorkloadResult | EngineResult]:
    """Build and measure each workload in turn, yielding each result as it completes."""
    built_by_name: dict[str, Built] = {}
    results_by_name: dict[str, WorkloadResult] = {}
    for workload in workloads:
        print(f"\n== {workload.name} ==")
        missing = workload.missing_requirements()
        if missing:
            print(f"  skipped: {', '.join(missing)} not installed")
            continue
        if workload.build is None:
            trivial = built_by_name.get(TRIVIAL) or build_trivial(small)
            yield measure_engine(small, session, trivial, results_by_name.get(TRIVIAL))
            continue
        started = time.perf_counter()
        built = built_by_name[workload.name] = workload.build(small)
        print(f"  {built.description}")
        print(f"  built in {time.perf_counter() - started:.2f} s (not timed)")
        result = results_by_name[workload.name] = measure_workload(
            workload, built, session, runs, skipped
        )
        print_workload(result)
        yield result


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    if options.list:
        width = max(len(name) for name in WORKLOAD_NAMES)
        for workload in WORKLOADS:
            print(f"{workload.name:<{width}}  {workload.summary}")
        return 0
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)  # each run shows as it completes
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = " ".join([COMMAND, *arguments])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = describe_machine()
    for name, value in machine.items():
        print(f"{name}: {value}")
    if options.small:
        print("sizes: --small")
    workloads = [workload for workload in WORKLOADS if workload.name in options.workloads]
    scheduler_names = [name for name in SCHEDULER_NAMES if name in options.schedulers]
    measured = Measurements()
    status = 0
    try:
        with open_schedulers(scheduler_names) as session:
            measured.start_seconds = session.start_seconds
            for name, seconds in session.start_seconds.items():
                print(f"{name}: {seconds:.2f} s")
            for result in run_workloads(
                workloads, session, options.small, options.runs, options.skip
            ):
                if isinstance(result, EngineResult):
                    measured.engine = result
                else:
                    measured.results.append(result)
    except KeyboardInterrupt:
        print("\ninterrupted: the clusters are closed; writing what was measured so far")
        status = 130

    targets = evaluate_targets(measured.results, measured.engine)
    sizes = " (at --small sizes: indicative only)" if options.small else ""
    print(f"\n== targets{sizes} ==")
    for item in targets:
        print(f"  {item}")
    context = header_lines(machine, command, date, measured)
    write_csv(options.csv, measured.results, context)
    print(f"\nresults: {options.csv.resolve()}")
    if options.markdown:
        write_markdown(options.markdown, context, measured.results, targets, options.small)
        print(f"report: {options.markdown.resolve()}")
    failed = [result.name for result in measured.results if result.failed]
    if failed:
        print(f"\n!!! FAILED: wrong results or failed computes in {', '.join(failed)}")
        status = status or 1
    return status
