"""Run reports as HTML pages: what ran, where, when, and what it cost, in one file.

One page holds one section per compute (:func:`render_page`), each with:

* **the task stream** (a Bokeh figure): one row per function instance, time in seconds from
  the start of the run's first batch (as ``report.tasks`` counts it) across. On each row, one
  bar per task it computed, coloured by task prefix (hover: key, prefix, duration, start,
  invocation, batch, bytes stored), and the spans of ``report.phases`` between them in light
  colours (hover: phase, duration, invocation): waiting for a function (a thin bar under the
  row, since the instance may still be busy with an earlier invocation meanwhile), cold start,
  loading, storing, between tasks, finishing. Instances are ordered by their first activity;
  an instance's invocations follow each other on its row;
* **the summary**: the client's time by phase (ingest, plan, upload, run, fetch), the functions'
  time by phase (a bar chart: the spans of every invocation added up, computing split by task
  prefix), the work (tasks, batches, invocations, instances, cold starts, recoveries, backups),
  the store's traffic and the bill item by item;
* **the plan's explanation** (``Plan.explain()``; a plan of many lines is folded under its
  first line, the plan's summary).

The page is self-contained: BokehJS and its styles are inlined (``bokeh.resources.INLINE``),
so the file opens offline and can be mailed or archived. Bokeh is needed only here, in the
client: functions never import this module.

:func:`performance_report` is Dask's ``performance_report`` for our clusters: every compute
run inside the ``with`` block, on any of this process's clusters and in any thread, gets a
section, in the order they ran (failed computes too); the file is written when the block
exits, even when it exits by an exception.
"""

from __future__ import annotations

import html
import os
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dask_serverless.report import (
    PHASE_DESCRIPTIONS,
    PHASES,
    RunReport,
    _bytes,
    start_recording,
    stop_recording,
)

if TYPE_CHECKING:
    from bokeh.models import Model

#: Colours of the spans outside tasks: light, so that tasks stand out.
PHASE_COLORS = {
    "waiting": "#bdbdbd",
    "cold start": "#737373",
    "loading": "#c6dbef",
    "storing": "#fdd0a2",
    "between tasks": "#e5e5e5",
    "marking done": "#a1d99b",
    "fan-in": "#9ecae1",
    "invoking": "#dadaeb",
    "reporting": "#c7e9c0",
    "finishing": "#c7e9c0",
    "no task recorded": "#fcbba1",
    "abandoned": "#fc9272",
}
#: Height of a row's bars (rows are one unit apart), and of the thin waiting bars under them.
BAR_HEIGHT = 0.7
WAITING_HEIGHT = 0.12
#: Plans of fewer lines are shown unfolded.
EXPLANATION_OPEN_LINES = 40

_STYLE = """
body { font-family: system-ui, sans-serif; color: #222; }
main { padding: 1em 2em; max-width: 1400px; }
section.compute { border-top: 1px solid #ccc; margin-top: 1.5em; }
table.figures { border-collapse: collapse; margin: 0.5em 2em 0.5em 0; display: inline-table;
  vertical-align: top; }
table.figures caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
table.figures th { text-align: left; font-weight: normal; padding: 0.1em 1em 0.1em 0; }
table.figures td { text-align: right; font-variant-numeric: tabular-nums; padding: 0.1em 0; }
dl.phases dt { font-weight: bold; float: left; clear: left; width: 9em; }
dl.phases dd { margin-left: 10em; }
details.explanation summary { font-family: monospace; cursor: pointer; }
pre.explanation { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
"""

_TEMPLATE = """
{% block postamble %}<style>{{ style }}</style>{% endblock %}
{% block contents %}
<main>
<h1>{{ title | e }}</h1>
{{ introduction | safe }}
{% for section in sections %}
<section class="compute" id="compute-{{ section.number }}">
{{ section.heading | safe }}
<h3>Task stream</h3>
{{ embed(roots[section.task_stream]) }}
<h3>Summary</h3>
{{ section.figures | safe }}
{{ embed(roots[section.phase_time]) }}
<h3>Plan</h3>
{{ section.explanation | safe }}
</section>
{% endfor %}
{{ legend | safe }}
</main>
{% endblock %}
"""


def duration_text(seconds: float) -> str:
    """A duration as the page shows it (µs, ms or s)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.3f} s"


def render_page(reports: list[RunReport], title: str | None = None) -> str:
    """One self-contained HTML page with a section per report (see the module
    documentation)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    title = title or "dask-serverless performance report"
    roots: list[Model] = []
    sections = []
    for number, report in enumerate(reports, start=1):
        stream = task_stream_figure(report, number)
        phase_time = phase_time_figure(report, number)
        roots += [stream, phase_time]
        sections.append(
            {
                "number": number,
                "heading": _heading(report, number, len(reports)),
                "task_stream": stream.name,
                "phase_time": phase_time.name,
                "figures": _figures(report),
                "explanation": _explanation(report),
            }
        )
    if not reports:
        # Nothing to plot: a page without BokehJS.
        return (
            f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1>"
            "<p>No compute ran on a dask-serverless cluster inside the block.</p>"
            "</main></body></html>\n"
        )
    introduction = (
        f"<p>{len(reports)} compute{'s' if len(reports) != 1 else ''}, in the order they "
        "ran. Times are seconds from the start of each run's first batch, on the "
        "functions' clocks.</p>"
    )
    return file_html(
        roots,
        INLINE,
        title,
        template=_TEMPLATE,
        template_variables={
            "style": _STYLE,
            "title": title,
            "introduction": introduction,
            "sections": sections,
            "legend": _phase_legend(),
        },
    )


def task_stream_figure(report: RunReport, number: int = 1) -> Any:
    """The task stream of one compute (a Bokeh figure named ``task-stream-<number>``; its task
    glyphs are the renderer ``tasks-<number>``, one glyph per row of ``report.tasks``)."""
    import pandas as pd
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.models.ranges import DataRange1d
    from bokeh.plotting import figure

    tasks = report.tasks
    phases = report.phases
    invocations = report.invocations
    rows = _instance_rows(phases, tasks, invocations)
    instance_of = dict(zip(invocations["invocation"], invocations["instance"], strict=True))

    task_rows = [rows.get(instance_of.get(invocation), 0) for invocation in tasks["invocation"]]
    prefixes = [str(prefix) for prefix in tasks["prefix"]]
    colors = _prefix_colors(prefixes)
    task_source = ColumnDataSource(
        {
            "left": tasks["start_s"].tolist(),
            "right": (tasks["start_s"] + tasks["duration_s"]).tolist(),
            "bottom": [row - BAR_HEIGHT / 2 for row in task_rows],
            "top": [row + BAR_HEIGHT / 2 for row in task_rows],
            "key": tasks["key"].tolist(),
            "prefix": prefixes,
            "color": [colors[prefix] for prefix in prefixes],
            "duration": [duration_text(value) for value in tasks["duration_s"]],
            "start": [f"{value:.6f} s" for value in tasks["start_s"]],
            "invocation": [str(value) for value in tasks["invocation"]],
            "batch": [str(value) for value in tasks["batch"]],
            "stored": [_bytes(float(value)) for value in tasks["stored_bytes"]],
        }
    )
    phase_rows = [rows.get(instance, 0) for instance in phases["instance"]]
    waiting = [phase == "waiting" for phase in phases["phase"]]
    phase_source = ColumnDataSource(
        {
            "left": phases["start_s"].tolist(),
            "right": phases["end_s"].tolist(),
            "bottom": [
                row - BAR_HEIGHT / 2 - (WAITING_HEIGHT if thin else 0)
                for row, thin in zip(phase_rows, waiting, strict=True)
            ],
            "top": [
                row - BAR_HEIGHT / 2 if thin else row + BAR_HEIGHT / 2
                for row, thin in zip(phase_rows, waiting, strict=True)
            ],
            "phase": phases["phase"].tolist(),
            "color": [PHASE_COLORS[phase] for phase in phases["phase"]],
            "duration": [duration_text(value) for value in phases["duration_s"]],
            "invocation": [str(value) for value in phases["invocation"]],
            "batch": ["" if value is pd.NA else str(value) for value in phases["batch"]],
        }
    )
    height = max(220, 60 + 28 * max(len(rows), 1))
    stream = figure(
        name=f"task-stream-{number}",
        title="Task stream: one row per function instance",
        height=height,
        sizing_mode="stretch_width",
        x_axis_label="seconds from the start of the run's first batch",
        y_range=DataRange1d(flipped=True),
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        toolbar_location="above",
    )
    phase_glyphs = stream.quad(
        source=phase_source,
        left="left",
        right="right",
        bottom="bottom",
        top="top",
        fill_color="color",
        line_color=None,
        legend_field="phase",
        name=f"phases-{number}",
    )
    task_glyphs = stream.quad(
        source=task_source,
        left="left",
        right="right",
        bottom="bottom",
        top="top",
        fill_color="color",
        line_color="white",
        line_width=0.5,
        legend_field="prefix",
        name=f"tasks-{number}",
    )
    stream.add_tools(
        HoverTool(
            renderers=[task_glyphs],
            tooltips=[
                ("key", "@key"),
                ("prefix", "@prefix"),
                ("duration", "@duration"),
                ("start", "@start"),
                ("invocation", "@invocation"),
                ("batch", "@batch"),
                ("stored", "@stored"),
            ],
            name=f"task-hover-{number}",
        ),
        HoverTool(
            renderers=[phase_glyphs],
            tooltips=[
                ("phase", "@phase"),
                ("duration", "@duration"),
                ("invocation", "@invocation"),
                ("batch", "@batch"),
            ],
            name=f"phase-hover-{number}",
        ),
    )
    ordered = sorted(rows.items(), key=lambda item: item[1])
    stream.yaxis.ticker = [row for _, row in ordered]
    stream.yaxis.major_label_overrides = {row: f"instance {row + 1}" for _, row in ordered}
    stream.ygrid.grid_line_color = None
    for legend in stream.legend:
        legend.click_policy = "hide"
        legend.label_text_font_size = "9pt"
        stream.add_layout(legend, "right")
    return stream


def phase_time_figure(report: RunReport, number: int = 1) -> Any:
    """The functions' time by phase, added up over every invocation (a Bokeh bar chart named
    ``phase-time-<number>``): the spans of ``report.phases`` and the tasks' own time, by
    prefix."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.models.ranges import DataRange1d, FactorRange
    from bokeh.plotting import figure

    seconds = function_seconds_by_phase(report)
    total = sum(seconds.values()) or 1.0
    names = list(seconds)
    colors = _prefix_colors([name.removeprefix("computing ") for name in names])
    source = ColumnDataSource(
        {
            "name": names,
            "seconds": [seconds[name] for name in names],
            "text": [duration_text(seconds[name]) for name in names],
            "share": [f"{seconds[name] / total:.1%}" for name in names],
            "color": [
                PHASE_COLORS.get(name) or colors[name.removeprefix("computing ")] for name in names
            ],
        }
    )
    chart = figure(
        name=f"phase-time-{number}",
        title="Function time by phase (every invocation added up)",
        y_range=FactorRange(factors=list(reversed(names)) or [""]),
        x_range=DataRange1d(start=0),
        height=max(160, 50 + 22 * len(names)),
        width=640,
        x_axis_label="seconds",
        tools="",
        toolbar_location=None,
    )
    bars = chart.hbar(
        source=source, y="name", right="seconds", height=0.7, fill_color="color", line_color=None
    )
    chart.add_tools(
        HoverTool(
            renderers=[bars],
            tooltips=[("phase", "@name"), ("time", "@text"), ("share", "@share")],
        )
    )
    chart.ygrid.grid_line_color = None
    return chart


def function_seconds_by_phase(report: RunReport) -> dict[str, float]:
    """Seconds the functions spent in each phase, added up over invocations, in the order
    they happen; the tasks' time as ``computing <prefix>``, after loading."""
    phases = report.phases
    by_phase = phases.groupby("phase")["duration_s"].sum() if len(phases) else {}
    tasks = report.tasks
    by_prefix = tasks.groupby(tasks["prefix"].astype(str))["duration_s"].sum() if len(tasks) else {}
    computing = {
        f"computing {prefix}": float(by_prefix[prefix])
        for prefix in sorted(by_prefix.keys(), key=lambda name: -by_prefix[name])
    }
    seconds: dict[str, float] = {}
    for phase in PHASE_DESCRIPTIONS:
        if phase == "storing":
            seconds.update(computing)
        if phase in by_phase:
            seconds[phase] = float(by_phase[phase])
    return seconds


class PerformanceReport:
    """The context manager of :func:`performance_report`; ``reports`` are the computes
    recorded so far."""

    def __init__(self, filename: str | os.PathLike[str], title: str | None = None) -> None:
        self.filename = os.fspath(filename)
        self.title = title
        self.reports: list[RunReport] = []
        self._recorder: list[RunReport] | None = None

    def __enter__(self) -> PerformanceReport:
        self._recorder = start_recording()
        self.reports = self._recorder
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._recorder is not None:
            stop_recording(self._recorder)
            self._recorder = None
        with open(self.filename, "w", encoding="utf-8") as page:
            page.write(render_page(self.reports, title=self.title))


def performance_report(
    filename: str | os.PathLike[str] = "dask-report.html", title: str | None = None
) -> PerformanceReport:
    """Record the computes run inside ``with`` and write them to ``filename`` as one
    self-contained HTML page when the block exits (Dask's ``performance_report``, for
    dask-serverless clusters): a section per compute, in the order they ran.

    >>> with dask_serverless.performance_report("run.html"):  # doctest: +SKIP
    ...     x.sum().compute()
    """
    return PerformanceReport(filename, title)


# -- helpers -------------------------------------------------------------------------------


def _instance_rows(phases: Any, tasks: Any, invocations: Any) -> dict[Any, int]:
    """Each function instance's row: instances by their first activity."""
    first: dict[Any, float] = {}
    for instance, start in zip(invocations["instance"], invocations["start_s"], strict=True):
        first[instance] = min(first.get(instance, float(start)), float(start))
    for instance, start in zip(phases["instance"], phases["start_s"], strict=True):
        first[instance] = min(first.get(instance, float(start)), float(start))
    ordered = sorted(first, key=lambda instance: (first[instance], str(instance)))
    return {instance: row for row, instance in enumerate(ordered)}


def _prefix_colors(prefixes: list[str]) -> dict[str, str]:
    from bokeh.palettes import Category20

    palette = Category20[20]
    # Saturated colours first (even places), then their light twins.
    ordered = palette[0::2] + palette[1::2]
    return {
        prefix: ordered[index % len(ordered)] for index, prefix in enumerate(sorted(set(prefixes)))
    }


def _heading(report: RunReport, number: int, count: int) -> str:
    state = "succeeded" if report.succeeded else "failed"
    run = f" ({html.escape(report.run_id)})" if report.run_id else ""
    return (
        f"<h2>Compute {number} of {count}{run}: {state} in "
        f"{duration_text(report.total_seconds)}</h2>"
    )


def _table(caption: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return f"<table class='figures'><caption>{html.escape(caption)}</caption>{body}</table>"


def _figures(report: RunReport) -> str:
    summary = dict(report)
    invocations = report.invocations
    client = [
        (phase, duration_text(float(summary[f"{phase}_seconds"])))
        for phase in PHASES
        if f"{phase}_seconds" in summary
    ]
    client.append(("total", duration_text(report.total_seconds)))
    work = [
        ("tasks", str(summary.get("tasks", 0))),
        ("batches", str(summary.get("batches", 0))),
        ("invocations", str(summary.get("invocations", len(invocations)))),
        ("instances", str(invocations["instance"].nunique() if len(invocations) else 0)),
        ("cold starts", str(int(invocations["cold"].sum()) if len(invocations) else 0)),
        ("recoveries", str(summary.get("recoveries", 0))),
        ("backups", str(summary.get("backups", 0))),
    ]
    store = [
        ("operations", str(summary.get("store_operations", 0))),
        ("written", _bytes(float(summary.get("store_bytes_written", 0)))),
        ("read", _bytes(float(summary.get("store_bytes_read", 0)))),
        (
            "peak memory",
            _bytes(float(invocations["peak_memory_bytes"].max())) if len(invocations) else "-",
        ),
    ]
    try:
        cost = report.cost
        where = "on AWS Lambda" if cost.pricing.on_aws else "as if on AWS Lambda"
        bill = [(name.replace("_", " "), f"${value:.6f}") for name, value in cost.items.items()]
        bill.append(("total", f"${cost.total:.6f}"))
        basis = (
            f"<p>Priced {where} ({cost.pricing.region}, {cost.pricing.architecture}, "
            f"{cost.pricing.memory_mb} MB functions) at the prices of {cost.prices_recorded}."
            "</p>"
        )
    except ValueError as error:  # a region or architecture the price table lacks
        bill, basis = [("total", "unknown")], f"<p>{html.escape(str(error))}</p>"
    return "".join(
        [
            _table("Client time by phase", client),
            _table("Work", work),
            _table("Store and memory", store),
            _table("Cost", bill),
            basis,
        ]
    )


def _explanation(report: RunReport) -> str:
    text = report.explanation
    if text is None:
        return "<p>No plan: the compute stopped before planning, or needed no run.</p>"
    first, _, rest = text.partition("\n")
    # A long plan (a line per batch) is folded under its first line, the plan's summary.
    opened = " open" if text.count("\n") < EXPLANATION_OPEN_LINES else ""
    return (
        f"<details class='explanation'{opened}><summary>{html.escape(first)}</summary>"
        f"<pre class='explanation'>{html.escape(rest)}</pre></details>"
    )


def _phase_legend() -> str:
    items = "".join(
        f"<dt>{html.escape(phase)}</dt><dd>{html.escape(description)}</dd>"
        for phase, description in PHASE_DESCRIPTIONS.items()
    )
    return (
        "<section class='legend'><h2>What the phases are</h2><p>Each span is the time between "
        "two marks a function records (a batch's start and report, a task's start and end); "
        "the phase names what the function does in between.</p>"
        f"<dl class='phases'>{items}</dl></section>"
    )
