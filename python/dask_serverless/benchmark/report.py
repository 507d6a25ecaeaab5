"""The report: the machine, a table per workload, the CSV and the Markdown report.

* The console: the machine (:func:`describe_machine`), each workload's table and notes as it
  completes (:func:`print_workload`): median, min and max seconds per scheduler, tasks per
  second where that is the measure, the check against the reference; under it our ratio to
  every other scheduler (ours / theirs: below 1 means we are faster) and what our runs cost
  (from ``cluster.last_run``).
* The CSV (:func:`write_csv`): one row per workload and scheduler (:data:`CSV_COLUMNS`), where
  ``serverless_ratio`` is our median divided by the row's median and the statistics columns
  are filled on ``serverless`` rows; the machine, the start-ups and the engine measurements are
  ``#`` comment lines at the top (:func:`header_lines`; read it with
  ``pandas.read_csv(path, comment="#")``).
* The Markdown report for docs/benchmarks.md (:func:`write_markdown`): the same context, the
  wide summary table (one row per workload), each workload's table and the targets.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask

import dask_serverless
from dask_serverless.benchmark.formatting import describe_zero_work, format_bytes, format_number
from dask_serverless.benchmark.measuring import (
    LAST_RUN_KEYS,
    OURS,
    PER_TASK_KEYS,
    SCHEDULER_NAMES,
    Measurements,
    WorkloadResult,
)
from dask_serverless.benchmark.targets import Target


def describe_machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError):
        memory = "unknown"
    versions = {"Python": platform.python_version(), "dask": dask.__version__}
    for module in ("distributed", "numpy", "sklearn", "dask_ml"):
        if importlib.util.find_spec(module) is not None:
            versions[module] = importlib.import_module(module).__version__
    versions["dask-serverless"] = dask_serverless.__version__
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "system": platform.platform(),
        **versions,
    }


def table(result: WorkloadResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a workload's table, for the console and for Markdown."""
    header = ["scheduler", "runs", "median s", "min s", "max s"]
    if result.built.tasks:
        header.append("tasks/s")
    header.append("check")
    rows = []
    for name, scheduler in result.schedulers.items():
        row = [name, str(len(scheduler.seconds)), format_number(scheduler.median, ".3f")]
        row += [format_number(min(scheduler.seconds, default=None), ".3f")]
        row += [format_number(max(scheduler.seconds, default=None), ".3f")]
        if result.built.tasks:
            row.append(format_number(result.tasks_per_second(name), ",.0f"))
        check = f"FAILED: {scheduler.error}" if scheduler.error else str(scheduler.check or "-")
        row.append(check)
        rows.append(row)
    return header, rows


def notes(result: WorkloadResult) -> list[str]:
    """The lines under a workload's table: our ratios and what our runs cost."""
    ours = result.schedulers.get(OURS)
    if ours is None:
        return []
    ratios = [
        f"{format_number(result.ratio(other), '.2f')}x {other}"
        for other in result.schedulers
        if other != OURS
    ]
    lines = (
        [f"{OURS} / other: {', '.join(ratios)} (below 1: {OURS} is faster than the other)"]
        if ratios
        else []
    )
    statistics = ours.engine_statistics()
    lines.append(
        f"{OURS}: {format_number(statistics['tasks'], ',.0f')} tasks in "
        f"{format_number(statistics['batches'], ',.0f')} batches; per task "
        f"{format_number(statistics['invocations_per_task'], '.3f')} invocations, "
        f"{format_number(statistics['store_operations_per_task'], '.2f')} store operations, "
        f"{format_bytes(statistics['store_bytes_per_task'])} store bytes (written + read); "
        f"{format_bytes(statistics['boundary_bytes'])} crossed function boundaries; run started "
        f"{format_number(statistics['started_seconds'], '.3f')} s after entering get() (ingest "
        f"{format_number(statistics['ingest_seconds'], '.3f')} s, plan "
        f"{format_number(statistics['plan_seconds'], '.3f')} s, upload "
        f"{format_number(statistics['upload_seconds'], '.3f')} s)"
    )
    return lines


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns: the first and the last to the left, numbers to the right."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if column in (0, len(row) - 1) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def print_workload(result: WorkloadResult) -> None:
    print()
    for line in text_table(*table(result)):
        print(f"  {line}")
    for line in notes(result):
        print(f"  {line}")


CSV_COLUMNS = (
    "workload",
    "scheduler",
    "runs",
    "median_seconds",
    "min_seconds",
    "max_seconds",
    "tasks_per_second",
    "serverless_ratio",
    "check",
    "max_relative_difference",
    "error",
    *LAST_RUN_KEYS,
    *PER_TASK_KEYS,
)


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_csv(path: Path, results: Sequence[WorkloadResult], header_lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        for line in header_lines:
            file.write(f"# {line}\n")
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            for name, scheduler in result.schedulers.items():
                check = scheduler.check
                statistics = scheduler.engine_statistics() if name == OURS else {}
                row = {
                    "workload": result.name,
                    "scheduler": name,
                    "runs": len(scheduler.seconds),
                    "median_seconds": scheduler.median,
                    "min_seconds": min(scheduler.seconds, default=None),
                    "max_seconds": max(scheduler.seconds, default=None),
                    "tasks_per_second": result.tasks_per_second(name),
                    "serverless_ratio": result.ratio(name),
                    "check": check.status if check else None,
                    "max_relative_difference": check.max_relative_difference if check else None,
                    "error": scheduler.error,
                    **statistics,
                }
                writer.writerow([csv_value(row.get(column)) for column in CSV_COLUMNS])


def header_lines(
    machine: dict[str, str], command: str, date: str, measured: Measurements
) -> list[str]:
    """The context of the numbers: CSV comment lines, and the top of the Markdown report."""
    lines = [f"dask-serverless benchmark, {date}: {command}"]
    lines += [f"{name}: {value}" for name, value in machine.items()]
    lines += [f"{name}: {seconds:.2f} s" for name, seconds in measured.start_seconds.items()]
    engine = measured.engine
    if engine is not None:
        lines.append(
            f"ingest + plan of {format_number(engine.ingest_tasks, ',')} tasks: "
            f"{format_number(engine.ingest_plan_seconds, '.3f')} s; started_seconds of a real "
            f"run: {format_number(engine.started_seconds, '.3f')} s"
        )
        lines += [
            f"zero-work, {label}: {describe_zero_work(values)}"
            for label, values in engine.zero_work.items()
        ]
        lines.append(f"planner: {format_number(engine.planner_tasks_per_second(), ',.0f')} tasks/s")
        lines += engine.notes
    return lines


def summary_table(results: Sequence[WorkloadResult]) -> tuple[list[str], list[list[str]]]:
    """One row per workload: the wide table of docs/benchmarks.md."""
    header = ["workload", "runs"]
    header += [f"{name} s" for name in SCHEDULER_NAMES]
    header += [f"ours / {name}" for name in ("threads", "processes")]
    header += ["invocations / task", "store ops / task", "value bytes written / crossed"]
    rows = []
    for result in results:
        ours = result.schedulers.get(OURS)
        runs = max((len(timed.seconds) for timed in result.schedulers.values()), default=0)
        row = [result.name, str(runs)]
        for name in SCHEDULER_NAMES:
            scheduler = result.schedulers.get(name)
            row.append(format_number(scheduler.median if scheduler else None, ".2f"))
        for name in ("threads", "processes"):
            ratio = result.ratio(name)
            row.append("–" if ratio is None else f"{ratio:.2f}×")
        if ours is not None:
            statistics = ours.engine_statistics()
            written = statistics.get("value_bytes_written")
            crossed = statistics.get("boundary_bytes")
            row += [
                format_number(statistics["invocations_per_task"], ".3f"),
                format_number(statistics["store_operations_per_task"], ".2f"),
                f"{format_number(written and written / 1e6, ',.3f')} MB / "
                f"{format_number(crossed and crossed / 1e6, ',.3f')} MB",
            ]
        else:
            row += ["–", "–", "–"]
        rows.append(row)
    return header, rows


def write_markdown(
    path: Path,
    context: Sequence[str],
    results: Sequence[WorkloadResult],
    targets: Sequence[Target],
    small: bool,
) -> None:
    lines = ["# Benchmarks", ""]
    lines += [f"- {line}" for line in context]
    if small:
        lines += ["", "Sizes: `--small` (quick check; not the sizes of the targets)."]
    lines += ["", "## Summary", ""]
    lines += [
        "Median wall seconds of one `dask.compute` per scheduler; ratios are ours over theirs "
        "(below 1: ours is faster).",
        "",
    ]
    lines += markdown_table(*summary_table(results))
    for result in results:
        lines += ["", f"## {result.name}", "", result.built.description + ".", ""]
        lines += markdown_table(*table(result))
        lines += [""] + [f"- {line}" for line in notes(result)]
    lines += ["", "## Targets", ""]
    lines += markdown_table(
        ["target", "measured", "required", "result"],
        [[item.subject, item.measured, item.requirement, item.verdict] for item in targets],
    )
    path.write_text("\n".join(lines) + "\n")
