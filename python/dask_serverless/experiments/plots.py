"""The plots of an experiment, drawn with matplotlib without pyplot (no global state, no
display: figures render through Agg), one PNG each (:data:`PLOTS`).

* ``time-by-memory.png``: median wall seconds of a run by memory size, one line per workload,
  platform and concurrency limit (a *series*), each timed run a dot;
* ``cost-by-memory.png``: the median cost of a run by memory size, the same way, and below it
  the Lambda compute item alone (GB-seconds: what the memory size prices directly; the
  requests of a run, to the store above all, often cost more and do not depend on it);
* ``cold-warm-latency.png``: per series, invocations' latency (``latency_s``: sent to last
  report) by memory size, cold starts and warm invocations side by side (box plots; warm-up
  runs included, as they carry the cold starts);
* ``time-by-phase.png``: per series, a bar per memory size stacking the median seconds of each
  phase of the run report (ingest, plan, upload, run, fetch) and ``other``: the rest of the
  wall time (Dask's graph optimization and the call around the scheduler).

Time and cost leave out warm-up runs and failed runs, as
:meth:`~dask_serverless.experiments.results.ExperimentResult.summary` does: the lines of the
first two plots are its medians.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dask_serverless.report import PHASES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dask_serverless.experiments.results import ExperimentResult

PHASE_COLUMNS = [f"{phase}_seconds" for phase in PHASES]


def series_label(workload: Any, platform: Any, max_concurrency: Any) -> str:
    concurrency = "default" if max_concurrency != max_concurrency else f"{max_concurrency:.0f}"
    return f"{workload}, {platform}, concurrency {concurrency}"


def _series(frame: Any) -> Iterator[tuple[str, Any]]:
    from dask_serverless.experiments.results import SERIES

    if frame.empty:
        return
    for key, part in frame.groupby(list(SERIES), sort=True, dropna=False):
        yield series_label(*key), part


def _new_figure(panels: int = 1) -> tuple[Figure, list[Any]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.6 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    return figure, list(axes)


def _empty(axes: Any, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=axes.transAxes)


def _by_memory(axes: Any, timed: Any, column: str, title: str, label: str) -> None:
    """Medians of ``column`` by memory size, a line per series, each run a dot."""
    if timed.empty:
        _empty(axes, "successful timed runs")
    for name, part in _series(timed):
        medians = part.groupby("memory_mb")[column].median()
        line = axes.plot(medians.index, medians.to_numpy(), marker="o", label=f"{name} (median)")
        axes.scatter(part["memory_mb"], part[column], color=line[0].get_color(), alpha=0.35, s=14)
    axes.set_xticks(sorted(set(timed["memory_mb"])))
    axes.set_xlabel("memory size (MB)")
    axes.set_ylabel(label)
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    if not timed.empty:
        axes.legend(fontsize="small")
    axes.grid(alpha=0.3)


def time_by_memory(result: ExperimentResult) -> Figure:
    figure, (axes,) = _new_figure()
    _by_memory(
        axes,
        result.timed_runs,
        "seconds",
        "Run time by memory size",
        "wall seconds of one compute (dots: each run)",
    )
    return figure


def cost_by_memory(result: ExperimentResult) -> Figure:
    # The run report's price table, at the setting's memory size (on AWS, an estimate of the
    # bill; on the local platform and an AWS-compatible endpoint, what AWS would charge).
    how = "priced as on AWS Lambda"
    figure, (total, compute) = _new_figure(2)
    timed = result.timed_runs
    _by_memory(
        total, timed, "cost_dollars", f"Cost of a run by memory size ({how})", "US$ per compute"
    )
    _by_memory(
        compute,
        timed,
        "cost_lambda_compute",
        "Its Lambda compute item alone (GB-seconds: what the memory size prices)",
        "US$ per compute",
    )
    for axes in (total, compute):
        axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return figure


def cold_warm_latency(result: ExperimentResult) -> Figure:
    invocations = result.invocations
    groups = list(_series(invocations))
    figure, panels = _new_figure(max(1, len(groups)))
    if not groups:
        _empty(panels[0], "invocations")
    colors = {True: "tab:blue", False: "tab:orange"}
    for axes, (name, part) in zip(panels, groups, strict=False):
        memory_sizes = sorted(set(part["memory_mb"]))
        for cold, offset in ((True, -0.2), (False, 0.2)):
            data, positions = [], []
            for index, memory_mb in enumerate(memory_sizes):
                latencies = part[(part["memory_mb"] == memory_mb) & (part["cold"] == cold)]
                values = latencies["latency_s"].dropna().to_numpy()
                if len(values):
                    data.append(values)
                    positions.append(index + offset)
            if data:
                boxes = axes.boxplot(
                    data, positions=positions, widths=0.35, patch_artist=True, showfliers=True
                )
                for box in boxes["boxes"]:
                    box.set_facecolor(colors[cold])
                    box.set_alpha(0.6)
        counts = part.groupby("cold").size()
        for cold, color in colors.items():
            kind = "cold starts" if cold else "warm invocations"
            axes.bar(0, 0, color=color, alpha=0.6, label=f"{kind} ({int(counts.get(cold, 0))})")
        axes.set_xticks(range(len(memory_sizes)), [str(size) for size in memory_sizes])
        axes.set_xlim(-0.6, len(memory_sizes) - 0.4)
        axes.set_xlabel("memory size (MB)")
        axes.set_ylabel("invocation latency (s)")
        axes.set_ylim(bottom=0)
        axes.set_title(f"Cold and warm invocations: {name}")
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3, axis="y")
    return figure


def phase_medians(timed: Any) -> Any:
    """Median seconds of each phase, and of the rest of the wall time, by memory size."""
    frame = timed[["memory_mb", "seconds", *PHASE_COLUMNS]].astype(float).copy()
    frame["other_seconds"] = (frame["seconds"] - frame[PHASE_COLUMNS].sum(axis=1)).clip(lower=0)
    return frame.groupby("memory_mb").median().drop(columns=["seconds"])


def time_by_phase(result: ExperimentResult) -> Figure:
    timed = result.timed_runs
    groups = list(_series(timed))
    figure, panels = _new_figure(max(1, len(groups)))
    if not groups:
        _empty(panels[0], "successful timed runs")
    for axes, (name, part) in zip(panels, groups, strict=False):
        medians = phase_medians(part)
        positions = range(len(medians))
        bottom = [0.0] * len(medians)
        for column in [*PHASE_COLUMNS, "other_seconds"]:
            values = medians[column].fillna(0).tolist()
            axes.bar(positions, values, bottom=bottom, label=column.removesuffix("_seconds"))
            bottom = [below + value for below, value in zip(bottom, values, strict=True)]
        axes.set_xticks(list(positions), [str(int(size)) for size in medians.index])
        axes.set_xlabel("memory size (MB)")
        axes.set_ylabel("median seconds")
        axes.set_title(f"Time by phase: {name}")
        axes.legend(fontsize="small", ncols=3)
        axes.grid(alpha=0.3, axis="y")
    return figure


#: File name -> the function drawing it.
PLOTS: dict[str, Callable[[ExperimentResult], Figure]] = {
    "time-by-memory.png": time_by_memory,
    "cost-by-memory.png": cost_by_memory,
    "cold-warm-latency.png": cold_warm_latency,
    "time-by-phase.png": time_by_phase,
}
