"""Deployment packages: Lambda's limits and the loadability of the native module."""

from __future__ import annotations

import re
import zipfile

import pytest

from dask_serverless import packaging
from dask_serverless.packaging import PackageError, PackageTooLargeError, build_package


def test_package_holds_the_handler_and_pinned_requirements(tmp_path):
    package = build_package(local_endpoint=True, cache_directory=tmp_path)
    names = set(zipfile.ZipFile(package.path).namelist())
    assert "dask_serverless/handler.py" in names
    assert any(name.startswith("dask_serverless/_core") for name in names)
    assert any(name.startswith("numpy/") for name in names)
    assert any(name.startswith("dask/") for name in names)
    assert not any(name.startswith("boto3/") for name in names)
    # The report's pages and tables are the client's: functions get no Bokeh, no pandas.
    assert not any(name.startswith(("bokeh/", "pandas/", "playwright/")) for name in names)
    assert package.unzipped_bytes < packaging.UNZIPPED_LIMIT_BYTES
    assert any(requirement.startswith("dask==") for requirement in package.requirements)
    # Built once, then reused from the cache.
    assert build_package(local_endpoint=True, cache_directory=tmp_path).path == package.path


def test_package_over_the_limit_offers_the_container_route(tmp_path, monkeypatch):
    monkeypatch.setattr(packaging, "UNZIPPED_LIMIT_BYTES", 1024 * 1024)
    with pytest.raises(PackageTooLargeError, match="over Lambda's limit") as raised:
        build_package(local_endpoint=True, cache_directory=tmp_path)
    message = str(raised.value)
    assert "docker build" in message and "ImageUri" in message
    dockerfile = raised.value.dockerfile.read_text()
    assert dockerfile.startswith("FROM public.ecr.aws/lambda/python:")
    assert "dask_serverless.handler.handler" in dockerfile


def test_native_module_too_new_for_the_runtime_is_refused(tmp_path):
    # This machine's native module needs a newer glibc than python3.11's Amazon Linux 2.
    native = next(packaging._package_source(None).glob("_core*.so")).read_bytes()
    needed = max(int(minor) for minor in re.findall(rb"GLIBC_2\.(\d+)", native))
    if needed <= packaging.RUNTIME_GLIBC["3.11"][1]:
        pytest.fail("the native module is old enough for python3.11: check the test's premise")
    with pytest.raises(PackageError, match="glibc.*maturin build"):
        build_package(python_version="3.11", cache_directory=tmp_path)


def test_native_module_for_another_architecture_is_refused(tmp_path):
    with pytest.raises(PackageError, match="not built for aarch64"):
        build_package(architecture="arm64", python_version="3.12", cache_directory=tmp_path)


def test_invalid_choices_are_clear(tmp_path):
    with pytest.raises(PackageError, match="architecture"):
        build_package(architecture="sparc", cache_directory=tmp_path)
    with pytest.raises(PackageError, match="python_version"):
        build_package(python_version="2.7", cache_directory=tmp_path)
