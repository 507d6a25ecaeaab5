"""``python -m dask_serverless.experiments CONFIG`` (see :mod:`.cli`)."""

from __future__ import annotations

import sys

from dask_serverless.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
