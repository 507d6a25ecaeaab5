"""Predict a compute's time and cost before paying for it: ``dask_serverless.simulate``.

The simulator (the native ``dask-serverless-sim`` crate) runs the engine's own planner and
protocol state machines on a virtual clock, with models of the platform (invocation latency,
cold starts, the concurrency limit and scaling rate, CPU and bandwidth by memory size), the
store (latency, bandwidth, request-rate limits) and the result channel. A platform model is a
named set of parameters with their sources::

    >>> import dask.array as da
    >>> import dask_serverless
    >>> x = da.random.random((20_000, 20_000), chunks=(2_000, 2_000))
    >>> report = dask_serverless.simulate(x @ x.T, platform="lambda", memory_mb=3008)
    >>> report.total_seconds, report.cost.total       # doctest: +SKIP

``platform`` names a model: ``"lambda"`` (AWS Lambda today, S3), ``"lambda-2020"`` (the
Wukong paper's setup: Lambda of 2020, Redis), ``"local"`` (this project's local platform as
measured on its development machine); ``parameters`` overrides any of a model's values
(``platform_parameters(name)`` shows them).

What each task costs comes from ``task_costs``:

* a :class:`~dask_serverless.report.RunReport` of a real run of the same graph: each task's
  measured duration and stored bytes (values kept in memory are counted at the median stored
  size), scaled by ``task_speed`` of the model;
* a mapping from key to ``(seconds, output bytes)``, or a callable of the key returning one;
  :func:`costs_by_prefix` makes one from a real run of the same operations on the same chunks
  (a small array measured here, a large one simulated);
* ``"metadata"`` (the default for an array): each task costed from Dask's array metadata
  alone, its chunks' shapes followed through its functions and each call costed by a cost per
  operation calibrated on this machine (:mod:`dask_serverless.simulation.arrays`);
* ``"constant"`` (the default for anything else): every task takes
  :data:`DEFAULT_TASK_SECONDS`, and outputs are :data:`DEFAULT_OUTPUT_BYTES`, except an array's
  own chunks, whose size Dask's metadata gives.

The result is a :class:`~dask_serverless.report.RunReport` like a real run's (phases, one row
per invocation and per task, the bill), so that ``save_html`` draws a simulated run's task
stream too; its mapping adds ``peak_concurrency``, ``critical_path`` (batch ids, first to
last), ``cold_starts`` and ``simulation_events``. Runs are deterministic for a ``seed``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Mapping
from typing import Any

import dask

from dask_serverless import _core
from dask_serverless._ingest import IngestedGraph, ingest
from dask_serverless._scheduler import plan_graph
from dask_serverless._validate import check_integer, check_number
from dask_serverless.errors import ConfigurationError
from dask_serverless.report import Pricing, RunReport

#: The platform models the simulator knows.
PLATFORMS = ("lambda", "lambda-2020", "local")
#: A task's duration and output size when nothing better is known.
DEFAULT_TASK_SECONDS = 0.001
DEFAULT_OUTPUT_BYTES = 1_000

TaskCostSource = (
    str | RunReport | Mapping[Any, tuple[float, int]] | Callable[[Any], tuple[float, int]]
)


def platform_parameters(name: str = "lambda") -> dict[str, Any]:
    """The parameters of a platform model, with their sources (``sources``)."""
    try:
        return json.loads(_core.simulator_parameters(name))
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def simulate(
    collection: Any,
    platform: str = "lambda",
    *,
    memory_mb: int = 2048,
    max_concurrency: int | None = None,
    parallelism: int | None = None,
    batches_per_function: int = 4,
    task_costs: TaskCostSource | None = None,
    parameters: Mapping[str, Any] | None = None,
    seed: int = 0,
    chaos: str | None = None,
    timeout_s: float = 300.0,
    region: str = "us-east-1",
    architecture: str = "x86_64",
    warm_instances: int | None = None,
) -> RunReport:
    """Simulate one compute of ``collection`` (see the module documentation).

    ``parallelism`` is what the planner cuts the graph for (default: ``max_concurrency``, else
    64, as ``LambdaCluster``); ``chaos`` injects the chaos platform's faults (``"kill=0.05"``);
    ``warm_instances`` are the instances warm when the compute starts (default: as the
    cluster leaves them, ``max_concurrency`` for ``local``, whose cluster prewarms its workers,
    and one elsewhere, the instance of ``LambdaCluster``'s first invocation)."""
    memory_mb = check_integer("memory_mb", memory_mb, 128, 10_240)
    if max_concurrency is not None:
        max_concurrency = check_integer("max_concurrency", max_concurrency, 1, 1_000_000)
    parallelism = check_integer("parallelism", parallelism or max_concurrency or 64, 1, 1_000_000)
    batches_per_function = check_integer("batches_per_function", batches_per_function, 1, 1000)
    timeout_s = check_number("timeout_s", timeout_s, 0.0, 900.0, exclusive=True)
    model = platform_parameters(platform)
    for name, value in (parameters or {}).items():
        if name not in model:
            raise ConfigurationError(
                f"the platform model has no parameter {name!r}: it has {', '.join(model)}"
            )
        model[name] = value
    graph = _graph_of(collection)
    plan = plan_graph(graph, parallelism, batches_per_function)
    durations, sizes = _task_costs(collection, graph, task_costs)
    if warm_instances is None:
        warm_instances = (max_concurrency or 2) if model["name"] == "local" else 1
    run = _core.simulate(
        plan,
        [seconds * 1e6 for seconds in durations],
        sizes,
        json.dumps(model),
        memory_mb=float(memory_mb),
        max_concurrency=max_concurrency,
        seed=seed,
        chaos=chaos,
        timeout_s=timeout_s,
        warm_instances=check_integer("warm_instances", warm_instances, 0, 1_000_000),
    )
    summary = run.summary()
    summary.update(
        run_id=f"simulated-{model['name']}-{seed}",
        tasks=len(graph.keys),
        batches=plan.batch_count(),
        simulated=True,
        platform=model["name"],
    )
    records = run.records()
    records["dependencies"] = graph.dependencies
    store = "redis" if model["store"]["kind"] == "redis" else "s3"
    pricing = Pricing(region=region, architecture=architecture, memory_mb=memory_mb, store=store)
    return RunReport(summary, records, keys=graph.keys, plan=plan, pricing=pricing)


class _GraphCapturedError(Exception):
    """Stops ``dask.compute`` once it handed its graph to the scheduler."""


def _graph_of(collection: Any) -> IngestedGraph:
    """The graph ``dask.compute`` would hand a scheduler (optimized, with its finalize
    tasks), ingested as ``get`` ingests it."""
    if not dask.is_dask_collection(collection):
        raise ConfigurationError(
            f"simulate takes a Dask collection (an array, a dataframe, a bag, a delayed), not "
            f"{type(collection).__name__}"
        )
    captured: dict[str, Any] = {}

    def capture(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        captured["graph"], captured["keys"] = dsk, keys
        raise _GraphCapturedError

    try:
        dask.compute(collection, scheduler=capture)
    except _GraphCapturedError:
        pass
    return ingest(captured["graph"], captured["keys"])


def _task_costs(
    collection: Any, graph: IngestedGraph, source: TaskCostSource | None
) -> tuple[list[float], list[int]]:
    """Each task's seconds and output bytes, by task number."""
    keys = graph.keys
    if source is None:
        import dask.array

        source = "metadata" if isinstance(collection, dask.array.Array) else "constant"
    if source == "metadata":
        from dask_serverless.simulation.arrays import metadata_costs

        return metadata_costs(collection, graph)
    if source == "constant":
        chunk_sizes = _chunk_sizes(collection)
        return (
            [DEFAULT_TASK_SECONDS] * len(keys),
            [chunk_sizes.get(key, DEFAULT_OUTPUT_BYTES) for key in keys],
        )
    if isinstance(source, str):
        raise ConfigurationError(
            f"task_costs must be 'metadata', 'constant', a run report, a mapping or a callable, "
            f"not {source!r}"
        )
    if isinstance(source, RunReport):
        return _measured_costs(source, keys)
    lookup = source.__getitem__ if isinstance(source, Mapping) else source
    durations: list[float] = []
    sizes: list[int] = []
    for key in keys:
        try:
            seconds, size = lookup(key)
        except KeyError:
            raise ConfigurationError(f"task_costs has no cost for task {key!r}") from None
        if not (math.isfinite(seconds) and seconds >= 0) or size < 0:
            raise ConfigurationError(
                f"the cost of task {key!r} must be seconds >= 0 and bytes >= 0, not "
                f"{(seconds, size)!r}"
            )
        durations.append(float(seconds))
        sizes.append(int(size))
    return durations, sizes


def _measured_costs(report: RunReport, keys: list[Any]) -> tuple[list[float], list[int]]:
    """A real run's durations and stored sizes, by key; a value kept in memory has no
    measured size: it counts at the median stored one. A key the report lacks (Dask names
    the finalize task of each compute anew) takes the costs of the report's tasks of the same
    prefix (:class:`PrefixCosts`)."""
    tasks = report.tasks
    measured = dict(
        zip(tasks["key"], zip(tasks["duration_s"], tasks["stored_bytes"], strict=True), strict=True)
    )
    by_prefix = PrefixCosts((report,), "error")
    durations, sizes = [], []
    for key in keys:
        found = measured.get(str(key))
        if found is None:
            seconds, size = by_prefix(key)
        else:
            seconds, size = found
        durations.append(float(seconds))
        sizes.append(int(size) if size > 0 else by_prefix.typical)
    return durations, sizes


class PrefixCosts:
    """Task costs by key prefix, measured by real runs (see :func:`costs_by_prefix`); calling
    it with a key gives ``(seconds, output bytes)``; ``estimated`` lists the prefixes no run
    measured, costed at the median measured task."""

    def __init__(self, reports: tuple[RunReport, ...], unknown: str) -> None:
        if unknown not in ("error", "median"):
            raise ValueError(f"unknown must be 'error' or 'median', not {unknown!r}")
        self.unknown = unknown
        self.durations: dict[str, list[float]] = {}
        self.sizes: dict[str, list[int]] = {}
        for report in reports:
            tasks = report.tasks
            for prefix, seconds, size in zip(
                tasks["prefix"], tasks["duration_s"], tasks["stored_bytes"], strict=True
            ):
                self.durations.setdefault(str(prefix), []).append(float(seconds))
                if size > 0:
                    self.sizes.setdefault(str(prefix), []).append(int(size))
        if not self.durations:
            raise ConfigurationError("the run reports have no task records to measure costs by")
        stored = [size for values in self.sizes.values() for size in values]
        self.typical = int(statistics.median(stored)) if stored else DEFAULT_OUTPUT_BYTES
        self.overall = statistics.median(
            value for values in self.durations.values() for value in values
        )
        self.estimated: set[str] = set()

    def __call__(self, key: Any) -> tuple[float, int]:
        from dask.utils import key_split

        prefix = key_split(key)
        # A larger graph may have stages the small one lacked (another level of a reduction,
        # ``sum-partial``): they cost as the prefixes of the same operation (``sum...``).
        related = [prefix] if prefix in self.durations else [
            known for known in self.durations if known.split("-")[0] == prefix.split("-")[0]
        ]  # fmt: skip
        if not related and self.unknown == "median":
            self.estimated.add(prefix)
            return self.overall, self.typical
        if not related:
            known = ", ".join(sorted(self.durations))
            raise ConfigurationError(
                f"the run report has no task of prefix {prefix!r} (task {key!r}); it has {known}"
            )
        seconds = statistics.median(value for name in related for value in self.durations[name])
        stored = [value for name in related for value in self.sizes.get(name, [])]
        return seconds, int(statistics.median(stored)) if stored else self.typical


def costs_by_prefix(*reports: RunReport, unknown: str = "error") -> PrefixCosts:
    """Task costs for another graph made of the same operations on the same chunks (a larger
    array of the same chunk size, say): each task costs the median of the reports' tasks of
    its prefix (``matmul``, ``sum``...), its output the median stored size of that prefix (a
    prefix whose values stayed in memory: the median over all stored values). A prefix the
    reports lack costs as those of the same operation (``sum-partial`` as ``sum...``); one of
    an operation the reports lack altogether is an error, or with ``unknown="median"`` costs
    the median of all measured tasks (listed in ``estimated``). Several reports (a small and a
    larger size) cover the stages that only some sizes have."""
    return PrefixCosts(reports, unknown)


def _chunk_sizes(collection: Any) -> dict[Any, int]:
    """Bytes of each chunk of an array collection's own output, from Dask's metadata."""
    import dask.array
    import numpy as np

    if not isinstance(collection, dask.array.Array):
        return {}
    chunks = collection.chunks
    itemsize = np.dtype(collection.dtype).itemsize
    keys = collection.__dask_keys__()
    if not chunks:
        return {keys[0]: itemsize}
    sizes: dict[Any, int] = {}
    for index in itertools.product(*(range(len(dimension)) for dimension in chunks)):
        entry: Any = keys
        for position in index:
            entry = entry[position]
        elements = math.prod(chunks[axis][position] for axis, position in enumerate(index))
        sizes[entry] = elements * itemsize
    return sizes
