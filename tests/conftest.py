"""Shared fixtures: one local platform per test module, checked for leftovers; a headless
browser for the modules that open pages."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from dask_serverless import LocalCluster


def shared_memory_roots() -> set[str]:
    return set(glob.glob("/dev/shm/dask-serverless-*"))


def process_exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def cluster():
    """A running LocalCluster with two workers, shared by a test module."""
    with LocalCluster(
        max_concurrency=2, memory_mb=1024, timeout_s=60, threads_per_function="client"
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def no_objects_left(request):
    """Every compute deletes its objects: the store holds nothing between tests."""
    yield
    if "cluster" in request.fixturenames:
        running = request.getfixturevalue("cluster")
        if running.running:
            assert running._store.list("") == []


def count_processes_with(text: str) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if text.encode() in cmdline.read():
                    count += 1
        except OSError:
            continue
    return count


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_address():
    """A real redis-server on a free port of 127.0.0.1, for the test session; fails (never
    skips) when the server is not installed: `make servers` installs it."""
    import shutil
    import socket
    import subprocess
    import time

    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run `make servers` (Debian's redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.02)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Headless chromium for the module: Debian's, never one Playwright downloads."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run `make browser` (Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()
