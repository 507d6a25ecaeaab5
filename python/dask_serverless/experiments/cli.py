"""``dask-serverless experiment CONFIG``: an experiment from a configuration file.

Also ``python -m dask_serverless.experiments CONFIG``. The file (TOML, or JSON by its suffix;
see :mod:`~dask_serverless.experiments.grid`) names the grid; ``--output`` overrides its
``output`` folder (default: ``experiment-results``, in the current folder), ``--runs`` its
count of timed runs, and ``--no-progress`` hides the progress line. At the end the summary is
printed as a Markdown table, with the files written.

Exit status: 0 when every compute succeeded and matched Dask's ``sync`` result, 1 when one
failed or differed (the others still ran, and everything is saved), 2 for a configuration
that cannot run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dask_serverless.errors import ConfigurationError

DEFAULT_OUTPUT = "experiment-results"


def parse_arguments(arguments: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dask-serverless experiment",
        description="Run a grid of workloads x memory sizes x concurrency limits x platforms "
        "x runs; save the tables (CSV, Parquet) and plots (PNG).",
    )
    parser.add_argument("config", type=Path, help="the grid: a TOML (or .json) file")
    parser.add_argument("--output", type=Path, help="folder of the results (overrides the file)")
    parser.add_argument("--runs", type=int, help="timed runs per setting (overrides the file)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress line on standard error"
    )
    return parser.parse_args(arguments)


def main(arguments: list[str] | None = None) -> int:
    options = parse_arguments(arguments)
    from dask_serverless.experiments import experiment, load_config

    try:
        config = load_config(options.config)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = dict(config.arguments)
    output = options.output or settings.pop("output", None) or DEFAULT_OUTPUT
    settings.pop("output", None)
    if options.runs is not None:
        settings["runs"] = options.runs
    if options.no_progress:
        settings["progress"] = False
    try:
        result = experiment(output=output, **settings)
    except (ConfigurationError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.summary_markdown())
    print(
        f"\nresults in {output}/: runs and invocations (CSV, Parquet), summary.csv, "
        "experiment.json, plots (PNG)"
    )
    failed = result.runs[result.runs["error"].notna() | (result.runs["check"] == "MISMATCH")]
    if not failed.empty:
        print(f"!!! {len(failed)} computes failed or differed from Dask's sync result:")
        for row in failed.itertuples(index=False):
            what = row.error if isinstance(row.error, str) else "result differs from sync"
            print(f"  {row.workload}, {row.platform}, {row.memory_mb} MB, run {row.run}: {what}")
        return 1
    return 0
