"""The local AWS-compatible endpoint of the end-to-end tests, started and stopped here."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def aws_endpoint():
    """Start the endpoint on a free port; yield its URL; stop it by PID."""
    executable = os.environ.get("DASK_SERVERLESS_MINISTACK", "ministack")
    if shutil.which(executable) is None and not os.path.exists(executable):
        raise RuntimeError(
            f"the AWS-compatible endpoint ({executable}) is not installed: run `make servers`"
        )
    port = free_port()
    scratch = tempfile.mkdtemp(prefix="dask-serverless-aws-endpoint-")
    lambda_directories = set(glob.glob("/tmp/ministack-*"))
    environment = dict(os.environ, BIND_HOST="127.0.0.1", GATEWAY_PORT=str(port), TMPDIR=scratch)
    log = open(os.path.join(scratch, "endpoint.log"), "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([executable], env=environment, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_ministack/health", timeout=1):
                    break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    with open(os.path.join(scratch, "endpoint.log"), errors="replace") as text:
                        raise RuntimeError(
                            f"the AWS-compatible endpoint did not start:\n{text.read()}"
                        ) from error
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
        for leftover in set(glob.glob("/tmp/ministack-*")) - lambda_directories:
            shutil.rmtree(leftover, ignore_errors=True)
