"""``python -m dask_serverless.bench``: the benchmark harness, kept under its documented name.

The harness lives in the package :mod:`dask_serverless.benchmark` (its docstring explains what
it measures): the workloads in ``workloads``, the checks of results in ``checking``, the
measurements in ``measuring`` and ``engine``, the targets in ``targets``, the tables, CSV and
Markdown in ``report``, the options and ``main`` in ``cli``. This module forwards to that
``main`` and re-exports the names other code imported from here; new code imports from the
package's modules.
"""

from __future__ import annotations

import sys

from dask_serverless.benchmark.checking import compare
from dask_serverless.benchmark.cli import main
from dask_serverless.benchmark.report import CSV_COLUMNS
from dask_serverless.benchmark.targets import evaluate_targets, target
from dask_serverless.benchmark.workloads import (
    build_demo,
    build_gemm,
    build_transpose_add,
    synthetic_dependencies,
)

__all__ = [
    "CSV_COLUMNS",
    "build_demo",
    "build_gemm",
    "build_transpose_add",
    "compare",
    "evaluate_targets",
    "main",
    "synthetic_dependencies",
    "target",
]

if __name__ == "__main__":
    sys.exit(main())
