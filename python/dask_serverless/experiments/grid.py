"""The grid of an experiment: what to compute, on which settings, how many times.

A :class:`Grid` names its workloads (:class:`ExperimentWorkload`: a name and a function that
returns the Dask collection to compute), the memory sizes, the concurrency limits and the
platforms to run them on, and how many warm-up and timed runs each combination gets. Its
:meth:`Grid.settings` are the clusters an experiment opens, one per (platform, memory size,
concurrency limit), in that order; each runs every workload.

A workload is given as

* the name of a workload of the benchmark's catalogue
  (:mod:`dask_serverless.benchmark.workloads`), built at full size or, with ``small``, at the
  sizes of the harness's ``--small``;
* ``"module:function"``: a function, imported, that takes no argument and returns a Dask
  collection (the name of the workload is ``function``);
* a Python callable of no argument returning a Dask collection (named after ``__name__``).

:func:`load_config` reads a grid from a TOML file (or JSON, by its ``.json`` suffix) with the
keyword arguments of :func:`dask_serverless.experiment` as keys, for example::

    workloads = ["gemm"]
    small = true
    memory_mb = [512, 1024, 2048, 3008]
    max_concurrency = [2]
    runs = 5
    warmup = 1
    platforms = ["local"]
    output = "memory-sweep"

    [local]            # keyword arguments of LocalCluster
    threads_per_function = 1

    [lambda]           # keyword arguments of LambdaCluster (platform "lambda")
    region = "us-east-1"
    endpoint_url = "http://127.0.0.1:4566"
"""

from __future__ import annotations

import functools
import importlib
import json
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dask_serverless.benchmark.workloads import Built, workload
from dask_serverless.errors import ConfigurationError

#: Platforms an experiment can run on.
PLATFORMS = ("local", "lambda")

#: Keys of a configuration file besides the tables of cluster options.
CONFIG_KEYS = (
    "workloads",
    "memory_mb",
    "max_concurrency",
    "runs",
    "warmup",
    "platforms",
    "small",
    "check",
    "output",
    "progress",
)


@dataclass(frozen=True)
class ExperimentWorkload:
    """A workload of an experiment: its name and how to build it (a
    :class:`~dask_serverless.benchmark.workloads.Built`: the Dask collection and what it is,
    at the chosen sizes)."""

    name: str
    build: Callable[[], Built] = field(repr=False)


@dataclass(frozen=True)
class Setting:
    """One cluster of an experiment: a platform, a memory size and a concurrency limit
    (``None``: the cluster's default)."""

    platform: str
    memory_mb: int
    max_concurrency: int | None

    def __str__(self) -> str:
        concurrency = "default" if self.max_concurrency is None else self.max_concurrency
        return f"{self.platform}, {self.memory_mb} MB, concurrency {concurrency}"


@dataclass(frozen=True)
class Grid:
    """Workloads x platforms x memory sizes x concurrency limits, each run ``warmup`` times
    (left out of the figures) then ``runs`` times."""

    workloads: tuple[ExperimentWorkload, ...]
    memory_mb: tuple[int, ...]
    max_concurrency: tuple[int | None, ...]
    platforms: tuple[str, ...]
    runs: int
    warmup: int
    #: Keyword arguments of each platform's cluster, by platform.
    cluster_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings(self) -> Iterator[Setting]:
        for platform in self.platforms:
            for memory_mb in self.memory_mb:
                for max_concurrency in self.max_concurrency:
                    yield Setting(platform, memory_mb, max_concurrency)

    @property
    def setting_count(self) -> int:
        return len(self.platforms) * len(self.memory_mb) * len(self.max_concurrency)

    @property
    def timed_runs(self) -> int:
        """Timed runs of the whole grid (warm-ups not counted)."""
        return self.setting_count * len(self.workloads) * self.runs

    @property
    def computes(self) -> int:
        """Computes of the whole grid, warm-ups included."""
        return self.setting_count * len(self.workloads) * (self.runs + self.warmup)

    def describe(self) -> dict[str, Any]:
        """The grid as plain values (written beside the tables; the workloads by name)."""
        return {
            "workloads": [entry.name for entry in self.workloads],
            "platforms": list(self.platforms),
            "memory_mb": list(self.memory_mb),
            "max_concurrency": list(self.max_concurrency),
            "runs": self.runs,
            "warmup": self.warmup,
            "cluster_options": {
                platform: dict(options) for platform, options in self.cluster_options.items()
            },
        }


def make_grid(
    workloads: Sequence[str | Callable[[], Any]],
    memory_mb: Sequence[int],
    max_concurrency: Sequence[int | None],
    runs: int,
    platforms: Sequence[str],
    warmup: int,
    small: bool,
    cluster_options: Mapping[str, Mapping[str, Any]],
) -> Grid:
    """A checked :class:`Grid`; raises :class:`ConfigurationError` saying what is wrong."""
    if isinstance(workloads, str | bytes) or not workloads:
        raise ConfigurationError("workloads must be a non-empty list of names or callables")
    resolved = tuple(resolve_workload(entry, small) for entry in workloads)
    names = [entry.name for entry in resolved]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"workloads are named twice: {', '.join(repeated)}")
    memory_sizes = _distinct("memory_mb", memory_mb)
    for size in memory_sizes:
        if not isinstance(size, int) or isinstance(size, bool) or not 128 <= size <= 10_240:
            raise ConfigurationError(
                f"memory_mb: {size!r} is not a whole number of MB in 128-10240"
            )
    concurrency_limits = _distinct("max_concurrency", max_concurrency)
    for limit in concurrency_limits:
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ConfigurationError(f"max_concurrency: {limit!r} is not a whole number >= 1")
    chosen_platforms = _distinct("platforms", platforms)
    unknown = [name for name in chosen_platforms if name not in PLATFORMS]
    if unknown:
        raise ConfigurationError(
            f"unknown platforms {', '.join(map(repr, unknown))}; choose from {', '.join(PLATFORMS)}"
        )
    for name, count, least in (("runs", runs, 1), ("warmup", warmup, 0)):
        if not isinstance(count, int) or isinstance(count, bool) or count < least:
            raise ConfigurationError(f"{name} must be a whole number >= {least}, not {count!r}")
    for platform in cluster_options:
        if platform not in PLATFORMS:
            raise ConfigurationError(f"options for unknown platform {platform!r}")
        reserved = {"memory_mb", "max_concurrency"} & set(cluster_options[platform])
        if reserved:
            raise ConfigurationError(
                f"{platform} options may not set {', '.join(sorted(reserved))}: the grid does"
            )
    return Grid(
        workloads=resolved,
        memory_mb=tuple(memory_sizes),
        max_concurrency=tuple(concurrency_limits),
        platforms=tuple(chosen_platforms),
        runs=runs,
        warmup=warmup,
        cluster_options={name: dict(options) for name, options in cluster_options.items()},
    )


def _distinct(name: str, values: Sequence[Any]) -> list[Any]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise ConfigurationError(f"{name} must be a non-empty list, not {values!r}")
    if len(set(values)) != len(values):
        raise ConfigurationError(f"{name} lists a value twice: {list(values)!r}")
    return list(values)


def resolve_workload(entry: str | Callable[[], Any], small: bool) -> ExperimentWorkload:
    """A workload from a catalogue name, ``"module:function"`` or a callable (see the module
    documentation)."""
    if callable(entry):
        name = getattr(entry, "__name__", None) or type(entry).__name__
        return ExperimentWorkload(name, _built_by(entry, f"{name}() (a Python callable)"))
    if not isinstance(entry, str):
        raise ConfigurationError(f"a workload is a name or a callable, not {entry!r}")
    if ":" in entry:
        module_name, _, attribute = entry.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ConfigurationError(f"workload {entry!r} cannot be imported: {error}") from error
        if not callable(function):
            raise ConfigurationError(f"workload {entry!r} is not callable")
        return ExperimentWorkload(attribute, _built_by(function, f"{entry}()"))
    try:
        known = workload(entry)
    except KeyError as error:
        raise ConfigurationError(error.args[0]) from None
    build = known.build
    if build is None:
        raise ConfigurationError(
            f"workload {entry!r} measures the engine alone and computes no Dask collection"
        )
    missing = known.missing_requirements()
    if missing:
        raise ConfigurationError(f"workload {entry!r} needs {', '.join(missing)}, not installed")
    return ExperimentWorkload(entry, functools.partial(build, small))


def _built_by(function: Callable[[], Any], description: str) -> Callable[[], Built]:
    return lambda: Built(function(), description)


@dataclass(frozen=True)
class ExperimentConfig:
    """What a configuration file asks for: the keyword arguments of
    :func:`dask_serverless.experiment`."""

    arguments: dict[str, Any]
    path: Path


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a configuration file (TOML, or JSON by its ``.json`` suffix); unknown keys are an
    error. The tables ``[local]`` and ``[lambda]`` become ``local_options`` and
    ``lambda_options``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigurationError(f"cannot read the configuration {path}: {error}") from error
    try:
        content = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"{path} is not valid: {error}") from error
    if not isinstance(content, dict):
        raise ConfigurationError(f"{path} must hold a table of settings")
    arguments: dict[str, Any] = {}
    for key, value in content.items():
        if key in PLATFORMS:
            if not isinstance(value, dict):
                raise ConfigurationError(f"{path}: [{key}] must be a table of cluster options")
            arguments[f"{key}_options"] = value
        elif key in CONFIG_KEYS:
            arguments[key] = value
        else:
            known = ", ".join((*CONFIG_KEYS, *PLATFORMS))
            raise ConfigurationError(f"{path}: unknown key {key!r}; known keys: {known}")
    if "workloads" not in arguments:
        raise ConfigurationError(f"{path} names no workloads")
    return ExperimentConfig(arguments, path)
