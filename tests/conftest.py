"""Shared fixtures: one local platform per test module, checked for leftovers."""

from __future__ import annotations

import glob
import os

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
        workers=2, memory_mb=1024, timeout_s=60, threads_per_worker="client"
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
