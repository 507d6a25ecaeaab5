"""An experiment's results: two tidy tables, a summary, and the files they are saved as.

* ``runs``: one row per compute. The coordinates (``workload``, ``platform``, ``memory_mb``,
  ``max_concurrency``, ``run``: its number on its cluster, warm-ups first; ``warmup``), the
  wall ``seconds`` of ``dask.compute``, the ``check`` against Dask's ``sync`` result and the
  ``error`` of a compute that failed, the cost (``cost_dollars`` and one ``cost_<item>`` per
  item of :class:`~dask_serverless.report.Cost`, ``gb_seconds``), ``cold_starts``,
  ``instances`` and ``peak_memory_bytes`` (the largest of its invocations: a function
  instance's resident memory at its peak), then every figure of the run report's summary (phases in
  ``<phase>_seconds``, tasks, batches, invocations, store operations and bytes...).
* ``invocations``: one row per invocation of every compute, its run's coordinates and
  ``run_id`` first, then the columns of :attr:`RunReport.invocations
  <dask_serverless.report.RunReport.invocations>`, and ``latency_s`` (``wait_s`` +
  ``duration_s``: from the invocation being sent to its last report).

Warm-up runs are kept, flagged, because they carry the cold starts; :meth:`summary` and the
plots of time and cost leave them out (and failed runs). :meth:`ExperimentResult.save` writes
both tables as CSV and Parquet, the summary as CSV, the grid and the machine as JSON, and the
plots as PNG (:mod:`~dask_serverless.experiments.plots`); :meth:`ExperimentResult.load` reads a
saved folder back.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dask_serverless.experiments.running import COORDINATES, LEADING_RUN_COLUMNS

#: What identifies a line of a plot: the coordinates but the memory size and the run.
SERIES = ("workload", "platform", "max_concurrency")
#: Files of a saved experiment.
RUNS_FILE, INVOCATIONS_FILE, SUMMARY_FILE, GRID_FILE = (
    "runs",
    "invocations",
    "summary.csv",
    "experiment.json",
)


def runs_frame(rows: Sequence[dict[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=[*COORDINATES, *LEADING_RUN_COLUMNS])
    leading = [*COORDINATES, *LEADING_RUN_COLUMNS]
    frame = frame[leading + [name for name in frame.columns if name not in leading]]
    return _tidy(frame)


def invocations_frame(frames: Sequence[Any]) -> Any:
    import pandas as pd

    if not frames:
        return pd.DataFrame(columns=[*COORDINATES, "run_id"])
    return _tidy(pd.concat(list(frames), ignore_index=True))


def _tidy(frame: Any) -> Any:
    """Columns of one type each, so that CSV and Parquet read back the same table: numbers
    where every value is a number (missing values as NaN), text elsewhere."""
    import pandas as pd

    frame = frame.reset_index(drop=True)
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        present = column.dropna()
        if present.empty:
            frame[name] = column.astype(float)
        elif all(isinstance(value, bool) for value in present):
            frame[name] = column.astype("boolean") if column.isna().any() else column.astype(bool)
        elif all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in present
        ):
            frame[name] = pd.to_numeric(column)
        else:
            frame[name] = column.map(lambda value: None if _missing(value) else str(value))
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class ExperimentResult:
    """The tables of an experiment (see the module documentation)."""

    def __init__(self, runs: Any, invocations: Any, grid: dict[str, Any]) -> None:
        self.runs = runs
        self.invocations = invocations
        #: The grid and where it ran, as plain values (``experiment.json``).
        self.grid = grid

    @property
    def timed_runs(self) -> Any:
        """The runs that count: not warm-ups, not failed."""
        runs = self.runs
        return runs[~runs["warmup"].astype(bool) & runs["error"].isna()]

    def summary(self) -> Any:
        """One row per workload, platform, concurrency limit and memory size: the timed runs
        that succeeded, the median, least and most seconds, the median cost, its Lambda compute
        item and GB-seconds, the median count of invocations, and the largest peak memory of a
        function instance (MB)."""
        import pandas as pd

        timed = self.timed_runs
        keys = [*SERIES, "memory_mb"]
        columns = [
            *keys, "runs", "failed", "median_seconds", "min_seconds", "max_seconds",
            "median_cost_dollars", "median_compute_cost_dollars", "median_gb_seconds",
            "median_invocations", "peak_memory_mb",
        ]  # fmt: skip
        if timed.empty:
            return pd.DataFrame(columns=columns)
        grouped = timed.groupby(keys, sort=True, dropna=False)
        summary = pd.DataFrame(
            {
                "runs": grouped["seconds"].count(),
                "median_seconds": grouped["seconds"].median(),
                "min_seconds": grouped["seconds"].min(),
                "max_seconds": grouped["seconds"].max(),
                "median_cost_dollars": grouped["cost_dollars"].median(),
                "median_compute_cost_dollars": grouped["cost_lambda_compute"].median(),
                "median_gb_seconds": grouped["gb_seconds"].median(),
                "median_invocations": grouped["invocations"].median(),
                "peak_memory_mb": grouped["peak_memory_bytes"].max() / 2**20,
            }
        ).reset_index()
        all_timed = self.runs[~self.runs["warmup"].astype(bool)]
        failures = all_timed[all_timed["error"].notna()].groupby(keys, dropna=False).size()
        summary["failed"] = [
            int(failures.get(tuple(row), 0)) for row in summary[keys].itertuples(index=False)
        ]
        return summary[columns]

    def summary_markdown(self) -> str:
        """:meth:`summary` as a Markdown table (seconds to the millisecond, cost in
        micro-dollars)."""
        summary = self.summary()
        header = [
            "workload", "platform", "concurrency", "memory MB", "runs", "median s", "min s",
            "max s", "median cost (µ$)", "of which compute (µ$)", "median GB-s", "invocations",
            "peak memory MB",
        ]  # fmt: skip
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in summary.itertuples(index=False):
            cells = [
                row.workload,
                row.platform,
                _text(row.max_concurrency, "{:.0f}"),
                _text(row.memory_mb, "{:.0f}"),
                f"{row.runs}" + (f" ({row.failed} failed)" if row.failed else ""),
                _text(row.median_seconds, "{:.3f}"),
                _text(row.min_seconds, "{:.3f}"),
                _text(row.max_seconds, "{:.3f}"),
                _text(row.median_cost_dollars * 1e6, "{:.2f}"),
                _text(row.median_compute_cost_dollars * 1e6, "{:.3f}"),
                _text(row.median_gb_seconds, "{:.3f}"),
                _text(row.median_invocations, "{:.0f}"),
                _text(row.peak_memory_mb, "{:.0f}"),
            ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        return "\n".join(lines)

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``runs`` and ``invocations`` (CSV and Parquet), ``summary.csv``,
        ``experiment.json`` (the grid, the machine, the date) and the plots (PNG) into
        ``directory`` (created if needed); returns the files written."""
        from dask_serverless.experiments.plots import PLOTS

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame in ((RUNS_FILE, self.runs), (INVOCATIONS_FILE, self.invocations)):
            csv_path, parquet_path = folder / f"{name}.csv", folder / f"{name}.parquet"
            frame.to_csv(csv_path, index=False)
            frame.to_parquet(parquet_path, index=False)
            written += [csv_path, parquet_path]
        summary_path = folder / SUMMARY_FILE
        self.summary().to_csv(summary_path, index=False)
        grid_path = folder / GRID_FILE
        grid_path.write_text(json.dumps(self.grid, indent=2, default=str) + "\n")
        written += [summary_path, grid_path]
        for file_name, make_figure in PLOTS.items():
            figure = make_figure(self)
            path = folder / file_name
            figure.savefig(path, dpi=100, bbox_inches="tight")
            written.append(path)
        return written

    @classmethod
    def load(cls, directory: str | Path) -> ExperimentResult:
        """The results saved in ``directory`` (from the Parquet files)."""
        import pandas as pd

        folder = Path(directory)
        grid_path = folder / GRID_FILE
        grid = json.loads(grid_path.read_text()) if grid_path.exists() else {}
        return cls(
            pd.read_parquet(folder / f"{RUNS_FILE}.parquet"),
            pd.read_parquet(folder / f"{INVOCATIONS_FILE}.parquet"),
            grid,
        )

    def __repr__(self) -> str:
        timed = len(self.timed_runs)
        return (
            f"ExperimentResult({len(self.runs)} runs, {timed} timed and successful, "
            f"{len(self.invocations)} invocations)"
        )


def _text(value: Any, template: str) -> str:
    return "-" if _missing(value) else template.format(value)


def describe_where(grid: dict[str, Any]) -> dict[str, Any]:
    """The grid with the machine, the versions and the date."""
    from dask_serverless.benchmark.report import describe_machine

    return {
        **grid,
        "machine": describe_machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
