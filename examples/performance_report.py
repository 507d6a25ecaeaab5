"""Two computes on a local cluster, seen as one HTML page (the README's example).

Writes ``run.html`` (both computes) and ``last.html`` (the last one) into the directory given
as the first argument (default: the current one), and prints the paths.
"""

import sys
from pathlib import Path

import dask.array as da

import dask_serverless
from dask_serverless import LocalCluster

directory = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
x = da.random.RandomState(42).random((4000, 4000), chunks=(1000, 1000))
with LocalCluster() as cluster, dask_serverless.performance_report(directory / "run.html"):
    x.mean().compute()
    (x @ x.T).sum().compute()
cluster.last_run.save_html(directory / "last.html")  # the last compute alone
print(directory / "run.html")
print(directory / "last.html")
