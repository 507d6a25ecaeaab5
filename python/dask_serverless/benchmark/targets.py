"""The targets of the issue, evaluated on what was measured: PASS, MISS, or ``-`` (not measured).

* our median over ``threads``' at most 1.2 and over ``processes``' at most 0.5, on the array
  workloads (:data:`RATIO_TARGET_WORKLOADS`);
* at least 20,000 tasks per second on ``trivial-100000``;
* at most 10 µs per task of the engine alone (zero-work), at least a million tasks per second
  of the planner, and under a second from a graph of the trivial workload to a started run;
* fewer invocations than tasks, and no more value bytes written than crossed a function
  boundary, on every workload we ran.

Timings are reported, never asserted: a missed target does not fail the run (only a wrong
result or a failed compute does).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dask_serverless.benchmark.formatting import format_number
from dask_serverless.benchmark.measuring import OURS, EngineResult, WorkloadResult
from dask_serverless.benchmark.workloads import TRIVIAL, ZERO_WORK

RATIO_TARGETS = {"threads": 1.2, "processes": 0.5}
RATIO_TARGET_WORKLOADS = ("demo", "transpose-add", "gemm", "tsqr-svd", "svd-compressed")
SYMBOLS: dict[Any, str] = {operator.le: "<=", operator.ge: ">=", operator.lt: "<"}


@dataclass(frozen=True)
class Target:
    subject: str
    measured: str
    requirement: str
    passed: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else "PASS" if self.passed else "MISS"

    def __str__(self) -> str:
        return f"{self.subject}: {self.measured} (target {self.requirement}): {self.verdict}"


def target(
    subject: str,
    value: float | None,
    comparison: Callable[[float, float], bool],
    limit: float | None,
    measured: str,
    requirement: str,
) -> Target:
    """``measured`` formats ``value``, e.g. ``"{:.2f}x threads"``; ``requirement`` says what
    ``limit`` is, after the comparison's symbol."""
    requirement = f"{SYMBOLS[comparison]} {requirement}"
    if value is None or limit is None:
        return Target(subject, "-", requirement, None)
    return Target(subject, measured.format(value), requirement, comparison(value, limit))


def evaluate_targets(
    results: Sequence[WorkloadResult], engine: EngineResult | None
) -> list[Target]:
    targets = []
    for result in results:
        for other, limit in RATIO_TARGETS.items():
            if result.name in RATIO_TARGET_WORKLOADS and other in result.schedulers:
                ratio = result.ratio(other)
                measured = f"{{:.2f}}x {other}"
                targets.append(
                    target(result.name, ratio, operator.le, limit, measured, f"{limit}x")
                )
        if result.name == TRIVIAL and OURS in result.schedulers:
            subject = f"{TRIVIAL} ({result.built.tasks:,} tasks)"
            rate = result.tasks_per_second(OURS)
            targets.append(
                target(subject, rate, operator.ge, 20_000, "{:,.0f} tasks/s", "20,000 tasks/s")
            )
    if engine is not None:
        labels: list[str | None] = list(engine.zero_work) or [None]
        for label in labels:
            subject = ZERO_WORK if label is None else f"{ZERO_WORK}, {label}"
            figures = engine.zero_work.get(label, {}) if label is not None else {}
            microseconds = figures.get("microseconds_per_task")
            measured = "{:.2f} µs per task"
            targets.append(target(subject, microseconds, operator.le, 10, measured, "10 µs"))
        rate = engine.planner_tasks_per_second()
        targets.append(
            target("planner", rate, operator.ge, 1e6, "{:,.0f} tasks/s", "1,000,000 tasks/s")
        )
        seconds, how = engine.started_seconds, "entering get() to a started run"
        if seconds is None:
            seconds, how = engine.ingest_plan_seconds, "ingest + plan only"
        subject = f"{format_number(engine.ingest_tasks, ',')} tasks from a graph to a run ({how})"
        targets.append(target(subject, seconds, operator.lt, 1, "{:.3f} s", "1 s"))
    for result in results:
        if OURS not in result.schedulers:
            continue
        statistics = result.schedulers[OURS].engine_statistics()
        subject = f"{result.name}: invocations per task"
        per_task = statistics["invocations_per_task"]
        targets.append(target(subject, per_task, operator.lt, 1, "{:.3f}", "1"))
        subject = f"{result.name}: value bytes written"
        written, boundary = statistics["value_bytes_written"], statistics["boundary_bytes"]
        requirement = f"boundary bytes ({format_number(boundary, ',.0f')} B)"
        targets.append(target(subject, written, operator.le, boundary, "{:,.0f} B", requirement))
    return targets
