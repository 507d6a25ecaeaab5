"""The ``dask-serverless`` command: the package's console script.

The command line itself lives in the native module (the same Rust code as the standalone
``dask-serverless`` binary), so installing the package installs the command with no second
build. ``bench`` runs this interpreter's ``python -m dask_serverless.bench``.
"""

from __future__ import annotations

import os
import signal
import sys

from dask_serverless import _core


def main() -> None:
    os.environ.setdefault("DASK_SERVERLESS_PYTHON", sys.executable)
    # The command handles Ctrl-C and SIGTERM itself (the local platform stops its workers).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(_core.run_command(["dask-serverless", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
