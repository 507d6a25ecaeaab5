"""The run report: what a compute ran, where, how long each part took, and what it cost.

After each compute, ``cluster.last_run`` is a :class:`RunReport`. It reads like the dict it
replaces (``last_run["total_seconds"]``, ``last_run["invocations"]``: the summary of phases and
counts) and adds the records the functions sent with their reports:

* ``report.tasks``: one row per task (its key and prefix, the batch and invocation that ran it,
  start and duration, bytes stored, and where its inputs came from: the same batch, a value
  handed over in memory, or the store);
* ``report.invocations``: one row per invocation (its function instance, cold or warm, time
  to initialize and time waited before starting, start, end and duration, CPU user and kernel
  seconds and the share of the time the CPU was idle, peak memory, batches and tasks, batches
  it abandoned (a backup's race lost, or the run ended: billed all the same), store operations
  and bytes, invocations it made);
* ``report.phases``: one row per span of an invocation's time spent outside its tasks (see
  :data:`PHASE_DESCRIPTIONS`): waiting for a function, a cold start, loading a batch, storing
  an output, finishing a batch. With the tasks they cover each invocation from its event to
  its last report;
* ``report.cost``: the run's bill as AWS would send it (see :class:`Cost`);
* ``report.explanation``: the plan's own account of how it cut the graph (``Plan.explain()``).

What the functions printed is not in the report: ``cluster.get_logs()`` reads it from the
platform (a :class:`RunLogs`, invocation id to text).

The records cost the functions nothing they would not do anyway: a few counters read per
batch, carried in the reports already sent.

**Phases come from marks.** A function reports, per batch, when the batch started (its spec
was asked for), when its tasks were done, its done mark written, its fan-ins answered, its
children invoked, and when its report was sent; per task, when it started and how long it
computed. The time between those marks is named by what the function does there (see
:data:`PHASE_DESCRIPTIONS`); it is never split further than the marks allow (a report without
the step marks shows the end of its batch as ``finishing``).

**Pages.** ``report.save_html(path)`` writes the compute as one self-contained HTML page (a
task stream, the summary, the plan's explanation: :mod:`dask_serverless.report_page`), and
:func:`dask_serverless.performance_report` writes one page for the computes run inside a
``with`` block. Every report is offered to the blocks open when it is made (:func:`record`).
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

#: The steps after a batch's tasks, by the index of the mark that ends them in a batch's
#: ``(computed, marked, fanned in, invoked)`` marks: the gap up to ``computed`` is the last
#: output's storing.
FINISHING_STEPS = (("storing", 0), ("marking done", 1), ("fan-in", 2), ("invoking", 3))

#: Phases of a compute, in order, as the summary names them (``<phase>_seconds``).
PHASES = ("ingest", "plan", "upload", "run", "fetch")

#: The spans of an invocation's time outside its tasks (``report.phases``), in the order they
#: happen, with what the function does in each. Each is the time between two marks the function
#: records; what falls between the same marks is named with it.
PHASE_DESCRIPTIONS = {
    "waiting": "the invocation's event waited between its invoker sending it and a function "
    "taking it (less the cold start, when the instance was starting meanwhile)",
    "cold start": "a new function instance started before its first invocation",
    "loading": "from the batch's start to its first task: claiming the batch, reading its spec "
    "and tasks, reading and unpickling its inputs",
    "storing": "from the end of a task whose output leaves the function to the next task: "
    "pickling the output and writing it to the store",
    "between tasks": "from the end of a task kept in memory to the next task (progress "
    "messages, stop checks)",
    "marking done": "writing the batch's done mark (the first attempt to write it wins)",
    "fan-in": "adding the batch to its children's fan-in sets",
    "invoking": "invoking the children the fan-ins released (but the one the function becomes)",
    "reporting": "sending the batch's report (and, after its last batch, ending the invocation)",
    "finishing": "from the batch's last task to its report, where the function did not say "
    "when each step ended: storing the last output, marking the batch done, fan-in, invoking "
    "released children, sending the report",
    "no task recorded": "a batch run whose tasks another invocation reported first (a "
    "duplicate delivery or a backup), or that ran no task",
    "abandoned": "a batch stopped unfinished: another invocation finished it first (a backup "
    "and the straggler it raced) or the run had ended; billed all the same",
}


def price_table() -> dict:
    """The price table kept with the package (``data/prices.json``): its date, sources and
    prices by region."""
    text = resources.files("dask_serverless").joinpath("data/prices.json").read_text()
    return json.loads(text)


@dataclass(frozen=True)
class Pricing:
    """Where and how a run is priced: the AWS region, the functions' architecture and memory
    size, the store's kind (``"s3"``; a shared-memory store is priced as if it were S3, the
    store a Lambda cluster uses) and, for a Redis store, its price per hour."""

    region: str = "us-east-1"
    architecture: str = "x86_64"
    memory_mb: int = 2048
    store: str = "s3"
    redis_dollars_per_hour: float = 0.0
    #: Whether the run happened on AWS, or is priced as if it had.
    on_aws: bool = False


@dataclass
class Cost:
    """A run's bill, item by item, in US dollars.

    * ``lambda_compute``: each invocation's duration (from its start to its last report,
      plus the initialization of a cold start), rounded up to the millisecond, times its memory
      size in GB, at the price of a GB-second for the architecture;
    * ``lambda_requests``: every invocation the client and the functions made;
    * ``store_requests``: S3 requests (GETs for reads; PUTs for writes, and three per fan-in
      add: two listings and a write), or for Redis its price per hour over the run;
    * ``queue_requests``: SQS requests: each send of a report and each receive of the client.

    Invocations that lost a backup's race are billed (their reports of abandoned batches carry
    what they spent), but for one still running when the run ended: its report comes after the
    client stopped listening. Invocations killed before they reported are not in the records
    either: the bill of a run with faults or backups is a lower bound.
    """

    items: dict[str, float]
    pricing: Pricing
    prices_recorded: str
    details: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.items.values())

    def __repr__(self) -> str:
        where = "on AWS Lambda" if self.pricing.on_aws else "as if on AWS Lambda"
        lines = [
            f"Cost ${self.total:.6f} ({where}, {self.pricing.region}, "
            f"{self.pricing.architecture}, {self.pricing.memory_mb} MB; "
            f"prices of {self.prices_recorded})"
        ]
        lines += [f"  {name:<16} ${value:.6f}" for name, value in self.items.items()]
        return "\n".join(lines)


def compute_cost(
    invocations: Any,
    statistics: Mapping[str, Any],
    client_store: Mapping[str, int],
    pricing: Pricing,
) -> Cost:
    """The bill of a run from its per-invocation records (a DataFrame as
    :attr:`RunReport.invocations` has it), its summary and the client's own store traffic."""
    table = price_table()
    regions = table["regions"]
    if pricing.region not in regions:
        known = ", ".join(sorted(regions))
        raise ValueError(f"no prices for region {pricing.region!r}: the table has {known}")
    prices = regions[pricing.region]
    per_gb_second = prices["lambda_gb_second"].get(pricing.architecture)
    if per_gb_second is None:
        raise ValueError(f"no Lambda price for architecture {pricing.architecture!r}")
    gigabytes = pricing.memory_mb / 1024
    billed_ms = 0
    for duration, init in zip(invocations["duration_s"], invocations["init_s"], strict=True):
        seconds = float(duration) + (0.0 if _missing(init) else float(init))
        billed_ms += math.ceil(seconds * 1000)
    reads = int(invocations["store_reads"].sum()) + int(client_store.get("reads", 0))
    writes = int(invocations["store_writes"].sum()) + int(client_store.get("writes", 0))
    fan_ins = int(invocations["store_fan_ins"].sum()) + int(client_store.get("fan_ins", 0))
    sends = int(invocations["messages_sent"].sum())
    receives = int(statistics.get("channel_receives", 0))
    requests = int(statistics.get("invocations", 0))
    if pricing.store == "redis":
        hours = float(statistics.get("total_seconds", 0.0)) / 3600
        store_cost = pricing.redis_dollars_per_hour * hours
    else:
        store_cost = (
            reads * prices["s3_get_request"] + (writes + 3 * fan_ins) * prices["s3_put_request"]
        )
    items = {
        "lambda_compute": billed_ms / 1000 * gigabytes * per_gb_second,
        "lambda_requests": requests * prices["lambda_request"],
        "store_requests": store_cost,
        "queue_requests": (sends + receives) * prices["sqs_request"],
    }
    details = {
        "billed_ms": billed_ms,
        "gb_seconds": billed_ms / 1000 * gigabytes,
        "invocation_requests": requests,
        "store_reads": reads,
        "store_writes": writes,
        "store_fan_ins": fan_ins,
        "queue_sends": sends,
        "queue_receives": receives,
    }
    return Cost(items, pricing, table["recorded"], details)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class RunReport(Mapping[str, Any]):
    """One compute's report (see the module documentation)."""

    def __init__(
        self,
        summary: dict[str, Any],
        records: dict[str, Any] | None = None,
        keys: list[Any] | None = None,
        plan: Any = None,
        pricing: Pricing | None = None,
    ) -> None:
        self._summary = dict(summary)
        self._records = records or {"batches": {}, "tasks": {}, "client_store": {}}
        self._keys = keys or []
        self._plan = plan
        self.pricing = pricing or Pricing()
        self._explanation: str | None = None

    # -- the summary, as the dict ``last_run`` was -----------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self._summary[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._summary)

    def __len__(self) -> int:
        return len(self._summary)

    @property
    def run_id(self) -> str | None:
        return self._summary.get("run_id")

    @property
    def succeeded(self) -> bool:
        return bool(self._summary.get("succeeded"))

    @property
    def total_seconds(self) -> float:
        return float(self._summary.get("total_seconds", 0.0))

    # -- records -----------------------------------------------------------------------------

    @cached_property
    def tasks(self) -> Any:
        """One row per task that ran (see the module documentation)."""
        import pandas as pd

        columns = self._records["tasks"]
        frame = pd.DataFrame(
            {
                "task": columns.get("task", []),
                "start_us": columns.get("start_us", []),
                "duration_us": columns.get("duration_us", []),
                "stored_bytes": columns.get("stored_bytes", []),
            }
        )
        numbers = frame["task"].tolist()
        keys = [self._keys[number] if number < len(self._keys) else None for number in numbers]
        frame.insert(1, "key", [str(key) for key in keys])
        frame.insert(2, "prefix", [_prefix(key) for key in keys])
        batches = [self._plan.batch_of(number) for number in numbers] if self._plan else []
        frame.insert(3, "batch", batches or [None] * len(frame))
        winners = self._batch_invocations()
        frame.insert(4, "invocation", [winners.get(batch) for batch in frame["batch"]])
        start = self._start_us()
        frame["start_s"] = (frame["start_us"] - start) / 1e6
        frame["duration_s"] = frame["duration_us"] / 1e6
        frame["inputs_same_batch"], frame["inputs_in_memory"], frame["inputs_from_store"] = (
            self._input_sources(numbers, batches)
        )
        return frame.drop(columns=["start_us", "duration_us"])

    @cached_property
    def invocations(self) -> Any:
        """One row per invocation that reported (see the module documentation)."""
        import pandas as pd

        batches = pd.DataFrame(
            {
                name: column
                for name, column in self._records["batches"].items()
                if name != "values_read"
            }
        )
        columns = [
            "invocation", "instance", "cold", "init_s", "wait_s", "start_s", "end_s",
            "duration_s", "cpu_user_s", "cpu_kernel_s", "cpu_idle_share", "peak_memory_bytes",
            "batches", "batches_abandoned", "tasks", "store_reads", "store_writes",
            "store_deletes", "store_fan_ins", "store_bytes_read", "store_bytes_written",
            "messages_sent", "invocations_made", "memory_mb",
        ]  # fmt: skip
        if batches.empty:
            return pd.DataFrame(columns=columns)
        start = self._start_us()
        grouped = batches.groupby("invocation", sort=False)
        frame = pd.DataFrame(
            {
                "instance": grouped["instance"].first(),
                "cold": grouped["cold"].first(),
                "init_s": grouped["init_us"].first() / 1e6,
                "wait_s": grouped["wait_us"].first() / 1e6,
                "start_s": (grouped["start_us"].min() - start) / 1e6,
                "end_s": (grouped["end_us"].max() - start) / 1e6,
                "cpu_user_s": grouped["cpu_user_us"].sum() / 1e6,
                "cpu_kernel_s": grouped["cpu_kernel_us"].sum() / 1e6,
                "peak_memory_bytes": grouped["peak_memory_bytes"].max(),
                "batches": grouped["batch"].count(),
                "batches_abandoned": grouped["abandoned"].sum(),
                "tasks": grouped["tasks"].sum(),
                "store_reads": grouped["store_reads"].sum(),
                "store_writes": grouped["store_writes"].sum(),
                "store_deletes": grouped["store_deletes"].sum(),
                "store_fan_ins": grouped["store_fan_ins"].sum(),
                "store_bytes_read": grouped["store_bytes_read"].sum(),
                "store_bytes_written": grouped["store_bytes_written"].sum(),
                "messages_sent": grouped["messages_sent"].sum(),
                "invocations_made": grouped["invoked"].sum(),
            }
        ).reset_index()
        frame["duration_s"] = frame["end_s"] - frame["start_s"]
        busy = frame["cpu_user_s"] + frame["cpu_kernel_s"]
        share = 1 - busy / frame["duration_s"].where(frame["duration_s"] > 0)
        frame["cpu_idle_share"] = share.clip(lower=0.0, upper=1.0)
        frame["memory_mb"] = self.pricing.memory_mb
        return frame[columns]

    @cached_property
    def phases(self) -> Any:
        """One row per span of an invocation's time outside its tasks: ``invocation``,
        ``instance``, ``batch`` (``<NA>`` for waiting and cold starts), ``phase`` (one of
        :data:`PHASE_DESCRIPTIONS`), ``start_s``, ``end_s`` and ``duration_s`` (seconds from
        the start of the run's first batch, as ``report.tasks`` counts them). Spans shorter
        than a microsecond are left out."""
        import pandas as pd

        columns = ["invocation", "instance", "batch", "phase", "start_s", "end_s", "duration_s"]
        batches = self._records["batches"]
        if not batches.get("batch"):
            return pd.DataFrame(columns=columns)
        tasks = self.tasks
        runs: dict[tuple[Any, Any], list[tuple[float, float, int]]] = {}
        for invocation, batch, start, duration, stored in zip(
            tasks["invocation"],
            tasks["batch"],
            tasks["start_s"],
            tasks["duration_s"],
            tasks["stored_bytes"],
            strict=True,
        ):
            runs.setdefault((invocation, batch), []).append(
                (float(start), float(start) + float(duration), int(stored))
            )
        origin = self._start_us()
        rows: list[tuple[Any, ...]] = []
        # When each batch's steps ended, where the function said (0: the step did not happen).
        steps: dict[tuple[Any, Any], tuple[int, ...]] = {}
        if "computed_us" in batches:
            for key in zip(
                batches["invocation"],
                batches["batch"],
                batches["computed_us"],
                batches["marked_us"],
                batches["fanned_in_us"],
                batches["invoked_us"],
                strict=True,
            ):
                steps.setdefault((key[0], key[1]), tuple(int(mark) for mark in key[2:]))

        def span(invocation, instance, batch, phase, start, end) -> None:
            if end - start >= 1e-6:
                rows.append((invocation, instance, batch, phase, start, end, end - start))

        abandoned_rows = batches.get("abandoned", [False] * len(batches["batch"]))
        for invocation, instance, batch, start_us, end_us, init_us, wait_us, abandoned in zip(
            batches["invocation"],
            batches["instance"],
            batches["batch"],
            batches["start_us"],
            batches["end_us"],
            batches["init_us"],
            batches["wait_us"],
            abandoned_rows,
            strict=True,
        ):
            start = (start_us - origin) / 1e6
            end = (end_us - origin) / 1e6
            init = 0.0 if _missing(init_us) else init_us / 1e6
            if not _missing(wait_us):
                span(invocation, instance, None, "waiting", start - wait_us / 1e6, start - init)
            span(invocation, instance, None, "cold start", start - init, start)
            if abandoned:
                span(invocation, instance, batch, "abandoned", start, end)
                continue
            ran = sorted(runs.get((invocation, batch), []))
            if not ran:
                span(invocation, instance, batch, "no task recorded", start, end)
                continue
            span(invocation, instance, batch, "loading", start, ran[0][0])
            for (_, previous_end, stored), (next_start, _, _) in zip(ran, ran[1:], strict=False):
                phase = "storing" if stored > 0 else "between tasks"
                span(invocation, instance, batch, phase, previous_end, next_start)
            finished = ran[-1][1]
            step_ends = (
                [
                    (phase, (marks[index] - origin) / 1e6)
                    for phase, index in FINISHING_STEPS
                    if marks[index] > 0
                ]
                if (marks := steps.get((invocation, batch)))
                else []
            )
            if not step_ends:
                span(invocation, instance, batch, "finishing", finished, end)
                continue
            if ran[-1][2] == 0:
                # The last output stays in memory: nothing is stored after it.
                step_ends = [
                    ("between tasks" if phase == "storing" else phase, mark)
                    for phase, mark in step_ends
                ]
            for phase, mark in [*step_ends, ("reporting", end)]:
                step_end = max(mark, finished)
                span(invocation, instance, batch, phase, finished, step_end)
                finished = step_end
        frame = pd.DataFrame(rows, columns=columns)
        frame["batch"] = frame["batch"].astype("Int64")
        return frame

    @property
    def explanation(self) -> str | None:
        """The plan's own account of the graph it cut (``Plan.explain()``); ``None`` when the
        compute stopped before planning or needed no run."""
        if self._explanation is None and self._plan is not None:
            self._explanation = self._plan.explain()
        return self._explanation

    @cached_property
    def cost(self) -> Cost:
        """The run's bill (see :class:`Cost`)."""
        return compute_cost(
            self.invocations, self._summary, self._records.get("client_store", {}), self.pricing
        )

    def to_dict(self) -> dict[str, Any]:
        """The summary, the cost and the counts of the records, as plain values."""
        invocations = self.invocations
        return {
            **self._summary,
            "cold_starts": int(invocations["cold"].sum()) if len(invocations) else 0,
            "instances": int(invocations["instance"].nunique()) if len(invocations) else 0,
            "cost_dollars": self.cost.total,
            "cost_items": dict(self.cost.items),
        }

    # -- display ---------------------------------------------------------------------------

    def _lines(self) -> list[str]:
        summary = self._summary
        state = "succeeded" if self.succeeded else "failed"
        lines = [f"RunReport {self.run_id or ''} ({state}) in {self.total_seconds:.3f} s"]
        phases = [
            f"{phase} {summary[f'{phase}_seconds']:.3f} s"
            for phase in PHASES
            if f"{phase}_seconds" in summary
        ]
        if phases:
            lines.append("  phases: " + ", ".join(phases))
        invocations = self.invocations
        cold = int(invocations["cold"].sum()) if len(invocations) else 0
        lines.append(
            f"  {summary.get('tasks', 0)} tasks in {summary.get('batches', 0)} batches; "
            f"{len(invocations)} invocations on {invocations['instance'].nunique()} instances "
            f"({cold} cold starts); {summary.get('recoveries', 0)} recoveries, "
            f"{summary.get('backups', 0)} backups"
            + (
                f", {summary['throttled_events']} throttled events invoked again"
                if summary.get("throttled_events")
                else ""
            )
        )
        lines.append(
            f"  store: {summary.get('store_operations', 0)} operations, "
            f"{_bytes(summary.get('store_bytes_written', 0))} written, "
            f"{_bytes(summary.get('store_bytes_read', 0))} read"
        )
        where = "on AWS Lambda" if self.pricing.on_aws else "as if on AWS Lambda"
        try:
            dollars = f"${self.cost.total:.6f}"
        except ValueError as error:  # a region or architecture the price table lacks
            dollars = f"unknown ({error})"
        lines.append(
            f"  cost: {dollars} ({where}, {self.pricing.region}, "
            f"{self.pricing.architecture}, {self.pricing.memory_mb} MB)"
        )
        return lines

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_html_(self) -> str:
        """The key figures as an HTML fragment (Jupyter shows it); ``save_html`` writes the
        full page, with the task stream."""
        lines = self._lines()
        rows = []
        for line in lines[1:]:
            name, _, value = line.strip().partition(": ")
            if not value:
                name, value = "work", name
            rows.append(
                f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
                f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            )
        return (
            f"<div class='dask-serverless-run-report'><strong>{html.escape(lines[0])}</strong>"
            f"<table>{''.join(rows)}</table>"
            "<small>report.save_html(path) writes the task stream</small></div>"
        )

    def to_html(self, title: str | None = None) -> str:
        """This compute as one self-contained HTML page (see
        :mod:`dask_serverless.report_page`)."""
        from dask_serverless.report_page import render_page

        return render_page([self], title=title)

    def save_html(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write :meth:`to_html` to ``path``; returns the path written."""
        target = os.fspath(path)
        with open(target, "w", encoding="utf-8") as page:
            page.write(self.to_html(title))
        return target

    # -- helpers ---------------------------------------------------------------------------

    def _start_us(self) -> int:
        starts = list(self._records["batches"].get("start_us", [])) + list(
            self._records["tasks"].get("start_us", [])
        )
        return min(starts) if starts else 0

    def _invocation_ids(self) -> set[str]:
        """The invocations that reported a batch."""
        return set(self._records["batches"].get("invocation", []))

    def _batch_invocations(self) -> dict[int, str]:
        """The invocation whose report of each batch finished came first (the one that
        counted)."""
        batches = self._records["batches"]
        winners: dict[int, str] = {}
        for batch, invocation, abandoned in zip(
            batches.get("batch", []),
            batches.get("invocation", []),
            batches.get("abandoned", [False] * len(batches.get("batch", []))),
            strict=True,
        ):
            if not abandoned:
                winners.setdefault(batch, invocation)
        return winners

    def _input_sources(
        self, numbers: list[int], task_batches: list[int]
    ) -> tuple[list[int], list[int], list[int]]:
        """For each task (`numbers`, run in `task_batches`): inputs computed in its own batch,
        handed over in memory, and read from the store."""
        if self._plan is None:
            zeros = [0] * len(numbers)
            return zeros, list(zeros), list(zeros)
        same, memory, store = [], [], []
        loaded: dict[int, set[int]] = {}
        batches = self._records["batches"]
        for batch, values_read in zip(
            batches.get("batch", []), batches.get("values_read", []), strict=True
        ):
            # The report that counted is the first of each batch.
            loaded.setdefault(batch, set(values_read))
        batch_of = dict(zip(numbers, task_batches, strict=True))
        for number, batch in zip(numbers, task_batches, strict=True):
            loaded.setdefault(batch, set())
            counts = [0, 0, 0]
            for dependency in self._dependencies(number):
                if dependency not in batch_of:
                    batch_of[dependency] = self._plan.batch_of(dependency)
                if batch_of[dependency] == batch:
                    counts[0] += 1
                elif dependency in loaded[batch]:
                    counts[2] += 1
                else:
                    counts[1] += 1
            same.append(counts[0])
            memory.append(counts[1])
            store.append(counts[2])
        return same, memory, store

    def _dependencies(self, number: int) -> list[int]:
        dependencies = self._records.get("dependencies")
        return list(dependencies[number]) if dependencies else []


# -- recording: the computes of open ``performance_report`` blocks -----------------------------

_recorders: list[list[RunReport]] = []
_recorders_lock = threading.Lock()


def record(report: RunReport) -> None:
    """Offer a compute's report to every open recorder (``performance_report`` blocks of any
    thread: computes on any of this process's clusters are recorded, as Dask records every
    compute of its scheduler)."""
    with _recorders_lock:
        for recorder in _recorders:
            recorder.append(report)


def start_recording() -> list[RunReport]:
    """A new recorder: the list that the reports of the next computes are appended to."""
    recorder: list[RunReport] = []
    with _recorders_lock:
        _recorders.append(recorder)
    return recorder


def stop_recording(recorder: list[RunReport]) -> None:
    with _recorders_lock:
        _recorders[:] = [other for other in _recorders if other is not recorder]


class RunLogs(Mapping[str, str]):
    """What the functions printed (standard output and error) during a compute, per
    invocation: ``logs[invocation_id]`` is the text of that invocation, the ids as in
    ``last_run.invocations["invocation"]``, in the order the invocations started.

    ``logs.started(invocation_id)`` is when it started (Unix seconds) and
    ``logs.omitted_bytes(invocation_id)`` how many bytes it wrote before those kept (the local
    platform keeps the last 64 KiB of each invocation). Printed, the logs read as one text, a
    header line per invocation."""

    def __init__(self, records: Iterable[Any]) -> None:
        self._text: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._omitted: dict[str, int] = {}
        for record in records:
            invocation = record.invocation_id
            self._text[invocation] = self._text.get(invocation, "") + record.text
            self._started.setdefault(invocation, record.started)
            self._omitted[invocation] = self._omitted.get(invocation, 0) + record.omitted_bytes

    def __getitem__(self, invocation_id: str) -> str:
        return self._text[invocation_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._text)

    def __len__(self) -> int:
        return len(self._text)

    def started(self, invocation_id: str) -> float:
        return self._started[invocation_id]

    def omitted_bytes(self, invocation_id: str) -> int:
        return self._omitted[invocation_id]

    def __repr__(self) -> str:
        lines = [f"RunLogs: {len(self)} invocations"]
        for invocation, text in self._text.items():
            started = datetime.datetime.fromtimestamp(self._started[invocation])
            header = f"--- invocation {invocation}, started {started.isoformat(sep=' ')}"
            if self._omitted[invocation]:
                header += f" ({self._omitted[invocation]} earlier bytes not kept)"
            lines.append(header)
            lines.extend(text.rstrip("\n").splitlines() if text else ["(no output)"])
        return "\n".join(lines)


def _prefix(key: Any) -> str | None:
    if key is None:
        return None
    from dask.utils import key_split

    return key_split(key)


def _bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"
