"""Deployment packages for AWS Lambda: this package, its native module and its dependencies.

A package is a zip of everything the handler imports: ``dask_serverless`` (with its native
module), and the wheels of the requirements for Lambda's platform (manylinux, the function's
architecture and Python version), resolved by pip. By default the requirements pin the client's
own versions of ``dask``, ``cloudpickle`` and ``numpy``: pickles made by the client must load in
the function. Packages are cached by content under ``~/.cache/dask-serverless/packages``.

Limits (Lambda's): 250 MB unzipped, layers included; 50 MB zipped when uploaded directly
(the deployer uploads through S3, where only the unzipped limit applies). A package over the
limit is refused with the container-image route: a generated Dockerfile and the steps to push
it and create the function from it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dask_serverless.errors import ServerlessError

UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
DIRECT_UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024
# Highest glibc of each Lambda Python runtime (Amazon Linux 2 for 3.11, 2023 for later ones).
RUNTIME_GLIBC = {"3.11": (2, 26), "3.12": (2, 34), "3.13": (2, 34)}
ARCHITECTURES = {"x86_64": ("x86_64", 62), "arm64": ("aarch64", 183)}
# Provided by the Lambda runtime, or not needed there.
EXCLUDED_DISTRIBUTIONS = {"boto3", "botocore", "s3transfer", "awslambdaric", "pip", "setuptools"}


class PackageError(ServerlessError):
    """A deployment package cannot be built."""


class PackageTooLargeError(PackageError):
    """The package is over Lambda's size limits; the message gives the container-image route."""

    def __init__(self, message: str, dockerfile: Path):
        super().__init__(message)
        self.dockerfile = dockerfile


@dataclass(frozen=True)
class DeploymentPackage:
    """A built package, ready to upload."""

    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    requirements: tuple[str, ...]
    architecture: str
    python_version: str

    @property
    def fits_direct_upload(self) -> bool:
        return self.zipped_bytes <= DIRECT_UPLOAD_LIMIT_BYTES


def default_requirements() -> list[str]:
    """The client's own versions of what every function imports."""
    pinned = []
    for name in ("dask", "cloudpickle", "numpy"):
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def host_glibc() -> tuple[int, int]:
    """The glibc of this machine (for a local AWS-compatible endpoint running here)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
        major, minor = version.split()[-1].split(".")[:2]
        return int(major), int(minor)
    except (ValueError, OSError, IndexError):
        return RUNTIME_GLIBC["3.11"]


def platform_tags(architecture: str, glibc: tuple[int, int]) -> list[str]:
    """Wheel platform tags a system with this glibc can load, newest first."""
    machine = ARCHITECTURES[architecture][0]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc[1], 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def build_package(
    requirements: list[str] | tuple[str, ...] = (),
    architecture: str = "x86_64",
    python_version: str = "3.11",
    wheel: str | os.PathLike | None = None,
    local_endpoint: bool = False,
    cache_directory: str | os.PathLike | None = None,
) -> DeploymentPackage:
    """Build (or reuse from the cache) the deployment package.

    ``wheel`` is a dask-serverless wheel built for Lambda (``maturin build --release --zig
    --compatibility manylinux2014``); without it the installed package is used, and its native
    module must be loadable on Lambda (checked). ``local_endpoint`` says the functions run on
    this machine (a local AWS-compatible endpoint): then this machine's glibc is the limit.
    """
    if architecture not in ARCHITECTURES:
        raise PackageError(
            f"architecture must be one of {sorted(ARCHITECTURES)}, not {architecture!r}"
        )
    if python_version not in RUNTIME_GLIBC:
        raise PackageError(
            f"python_version must be one of {sorted(RUNTIME_GLIBC)} (Lambda's Python runtimes), "
            f"not {python_version!r}"
        )
    requirements = tuple(default_requirements()) + tuple(requirements)
    source = _package_source(wheel)
    glibc = host_glibc() if local_endpoint else RUNTIME_GLIBC[python_version]
    if not local_endpoint and wheel is None:
        _check_native_module(source, architecture, python_version)
    cache = Path(cache_directory or Path.home() / ".cache" / "dask-serverless" / "packages")
    cache.mkdir(parents=True, exist_ok=True)
    key = _cache_key(requirements, architecture, python_version, glibc, source, wheel)
    target = cache / f"{key}.zip"
    if target.exists():
        return _describe(target, requirements, architecture, python_version)

    with tempfile.TemporaryDirectory(prefix="dask-serverless-package-") as scratch:
        scratch_path = Path(scratch)
        wheels = scratch_path / "wheels"
        content = scratch_path / "content"
        content.mkdir()
        _download(requirements, wheels, architecture, python_version, glibc)
        for downloaded in sorted(wheels.glob("*.whl")):
            distribution = downloaded.name.split("-")[0].replace("_", "-").lower()
            if distribution in EXCLUDED_DISTRIBUTIONS:
                continue
            with zipfile.ZipFile(downloaded) as archive:
                archive.extractall(content)
        if wheel is not None:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(content)
        else:
            shutil.copytree(
                source,
                content / "dask_serverless",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                dirs_exist_ok=True,
            )
        unzipped = sum(path.stat().st_size for path in content.rglob("*") if path.is_file())
        if unzipped > UNZIPPED_LIMIT_BYTES:
            dockerfile = _write_container_recipe(cache / key, requirements, python_version)
            message = _too_large_message(content, unzipped, dockerfile)
            raise PackageTooLargeError(message, dockerfile)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(content.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(content).as_posix())
        partial.replace(target)
    return _describe(target, requirements, architecture, python_version)


def _package_source(wheel) -> Path:
    import dask_serverless

    return Path(dask_serverless.__file__).resolve().parent


def _native_module(source: Path) -> Path:
    found = sorted(source.glob("_core*.so"))
    if not found:
        raise PackageError(
            f"no native module in {source}: build it first (`make install`, or `maturin develop`)"
        )
    return found[0]


def _check_native_module(source: Path, architecture: str, python_version: str) -> None:
    """Refuse a native module that Lambda could not load (wrong machine, too new a glibc)."""
    module = _native_module(source)
    data = module.read_bytes()
    machine_name, machine_code = ARCHITECTURES[architecture]
    if data[:4] != b"\x7fELF" or int.from_bytes(data[18:20], "little") != machine_code:
        raise PackageError(
            f"the native module {module.name} is not built for {machine_name}: build a wheel "
            f"for Lambda with `maturin build --release --zig --compatibility manylinux2014 "
            f"--target {machine_name}-unknown-linux-gnu` and pass it as wheel=..."
        )
    minors = [int(found) for found in re.findall(rb"GLIBC_2\.(\d+)", data)]
    needed = (2, max(minors, default=0))
    runtime = RUNTIME_GLIBC[python_version]
    if needed > runtime:
        raise PackageError(
            f"the native module {module.name} needs glibc {needed[0]}.{needed[1]}, but Lambda's "
            f"python{python_version} runtime has glibc {runtime[0]}.{runtime[1]}: build a "
            f"manylinux wheel with `maturin build --release --zig --compatibility manylinux2014` "
            f"and pass it as wheel=... (for a local AWS-compatible endpoint on this machine, "
            f"pass check_native_module=False)"
        )


def _cache_key(requirements, architecture, python_version, glibc, source: Path, wheel) -> str:
    digest = hashlib.sha256()
    description = [list(requirements), architecture, python_version, list(glibc)]
    digest.update(json.dumps(description).encode())
    if wheel is not None:
        digest.update(Path(wheel).read_bytes())
    else:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(source).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _download(requirements, wheels: Path, architecture: str, python_version: str, glibc) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--dest",
        str(wheels),
    ]
    for tag in platform_tags(architecture, glibc):
        command += ["--platform", tag]
    command += list(requirements)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise PackageError(
            f"pip could not download the requirements {list(requirements)} for Lambda "
            f"({architecture}, Python {python_version}, glibc {glibc[0]}.{glibc[1]}); every "
            f"requirement needs a manylinux wheel for it (recent NumPy needs glibc 2.28: use "
            f"python_version='3.12' or later):\n{completed.stderr.strip()[-2000:]}"
        )


def _describe(path: Path, requirements, architecture, python_version) -> DeploymentPackage:
    with zipfile.ZipFile(path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    return DeploymentPackage(
        path=path,
        zipped_bytes=path.stat().st_size,
        unzipped_bytes=unzipped,
        requirements=tuple(requirements),
        architecture=architecture,
        python_version=python_version,
    )


def _too_large_message(content: Path, unzipped: int, dockerfile: Path) -> str:
    sizes = []
    for entry in content.iterdir():
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        sizes.append((sum(p.stat().st_size for p in files), entry.name))
    largest = ", ".join(f"{name} {size / 1e6:.0f} MB" for size, name in sorted(sizes)[::-1][:5])
    return (
        f"the deployment package is {unzipped / 1e6:.0f} MB unzipped, over Lambda's limit of "
        f"{UNZIPPED_LIMIT_BYTES / 1e6:.0f} MB (largest: {largest}). Use a container image "
        f"(up to 10 GB) instead: a Dockerfile is ready at {dockerfile}; build and push it with\n"
        f"  docker build -t dask-serverless {dockerfile.parent}\n"
        f"  aws ecr create-repository --repository-name dask-serverless\n"
        f"  docker tag dask-serverless <account>.dkr.ecr.<region>.amazonaws.com/dask-serverless\n"
        f"  docker push <account>.dkr.ecr.<region>.amazonaws.com/dask-serverless\n"
        f"then create the function from the image (aws lambda create-function --package-type "
        f"Image --code ImageUri=...), or drop large requirements you do not need."
    )


def _write_container_recipe(directory: Path, requirements, python_version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "requirements.txt").write_text("\n".join(requirements) + "\ndask-serverless\n")
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text(
        f"FROM public.ecr.aws/lambda/python:{python_version}\n"
        "COPY requirements.txt ${LAMBDA_TASK_ROOT}/\n"
        "RUN pip install --no-cache-dir -r ${LAMBDA_TASK_ROOT}/requirements.txt "
        "--target ${LAMBDA_TASK_ROOT}\n"
        'CMD ["dask_serverless.handler.handler"]\n'
    )
    return dockerfile
