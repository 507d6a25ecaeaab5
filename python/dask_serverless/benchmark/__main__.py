"""``python -m dask_serverless.benchmark``: the harness's command line (see
:mod:`dask_serverless.benchmark.cli`)."""

import sys

from dask_serverless.benchmark.cli import main

# The guard keeps the processes that Dask's ``processes`` scheduler spawns, which import the
# main module again, from running the benchmark.
if __name__ == "__main__":
    sys.exit(main())
