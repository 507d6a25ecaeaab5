"""Task costs of an array graph from Dask's metadata alone: shapes, dtypes and chunk sizes.

A graph that was never run here still says what each task does: its function, and the
shapes of the chunks it reads. This module follows each task's chunks through its functions
without computing anything (an *abstract evaluation*: a chunk is only its shape and item
size), and costs each function call by its family::

    seconds = per_call + per_byte * (bytes read + bytes written) + per_flop * flops
              + per_panel * panel

with coefficients per family (``random``, ``contraction``, ``qr``, ``svd``, ``reduction``,
``concatenate``, ``getitem``, ``elementwise``) fitted on this machine by
``python -m dask_serverless.simulation.arrays --calibrate`` (real runs of small arrays of
several chunk shapes on the local platform, each task's measured duration against its
calls' features; non-negative least squares). The fit is kept in ``array_costs.json`` beside
this module, with the date and the machine it was measured on.

Shapes come from two places: the chunk sizes Dask records on each array layer
(``collection_annotations``) for the tasks that make an array's chunks, and rules for the
functions whose results no layer describes (a chunk's QR, SVD, tensor product, stacking,
reduction, item, slice). A function without a rule is taken as elementwise: its output is
its array arguments broadcast. Flops count the multiply-adds of the linear algebra (m n k
for a product of m x k and k x n, m n min(m, n) for a QR or an SVD of m x n); a QR's or an
SVD's *panel* term, m n min(n, 32), carries what flops alone miss: LAPACK factors 32
columns at a time with memory-bound steps, so that a QR's time per flop varies 15-fold with
the chunk's shape (measured here: 0.24 ns at 10,000 x 500, 4 ns at 40,000 x 20), its time
per panel term only 3-fold (2 to 7 ns). The coefficients turn the features into seconds.

What it cannot know: data-dependent work (a sort's, a unique's), sparse or object chunks,
and functions whose output shape no rule derives; those count as elementwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dask._task_spec import Alias, DataNode, NestedContainer, Task, TaskRef

#: Where the calibrated coefficients are kept.
COEFFICIENTS_PATH = Path(__file__).with_name("array_costs.json")
#: A value that is not an array (a number, a small dict): its stored size.
SMALL_VALUE_BYTES = 100
FAMILIES = (
    "random",
    "contraction",
    "qr",
    "svd",
    "reduction",
    "concatenate",
    "getitem",
    "elementwise",
)
#: LAPACK factors a matrix a panel of this many columns at a time (its block size), each
#: panel with memory-bound steps.
LAPACK_PANEL_COLUMNS = 32
#: The features of a call, in the order of a family's coefficients.
FEATURES = ("per_call", "per_byte", "per_flop", "per_panel")


@dataclasses.dataclass(frozen=True)
class Chunk:
    """An array known by its shape and item size only."""

    shape: tuple[int, ...]
    itemsize: int = 8

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


@dataclasses.dataclass
class Call:
    """One function call of a task: its family, the bytes it reads and writes, its flops
    and, for a QR or an SVD of an m x n chunk (m >= n), its panel term m n min(n, 32)."""

    family: str
    bytes: int
    flops: float
    panel: float = 0.0


def value_bytes(value: Any) -> int:
    """What a value weighs: its chunks' bytes, a small constant for anything else."""
    if isinstance(value, Chunk):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(value_bytes(item) for item in value) or SMALL_VALUE_BYTES
    if isinstance(value, dict):
        return sum(value_bytes(item) for item in value.values()) or SMALL_VALUE_BYTES
    return SMALL_VALUE_BYTES


def _chunks_in(value: Any) -> list[Chunk]:
    if isinstance(value, Chunk):
        return [value]
    if isinstance(value, (tuple, list)):
        return [chunk for item in value for chunk in _chunks_in(item)]
    if isinstance(value, dict):
        return [chunk for item in value.values() for chunk in _chunks_in(item)]
    return []


def _function_name(function: Any) -> str:
    while hasattr(function, "func") and not isinstance(function, type):
        function = function.func
    return getattr(function, "__name__", type(function).__name__)


def _bound_keywords(function: Any) -> dict:
    """The keywords a ``functools.partial`` binds."""
    keywords: dict = {}
    while hasattr(function, "func") and not isinstance(function, type):
        keywords = {**getattr(function, "keywords", {}), **keywords}
        function = function.func
    return keywords


def _getitem(container: Any, index: Any) -> Any:
    if isinstance(container, (tuple, list, dict)):
        try:
            return container[index]
        except (IndexError, KeyError, TypeError):
            return None
    if isinstance(container, Chunk):
        import numpy as np

        # A view with no memory behind it: NumPy's own indexing rules give the shape.
        view = np.lib.stride_tricks.as_strided(
            np.zeros(1), container.shape, (0,) * len(container.shape)
        )
        try:
            return Chunk(view[index].shape, container.itemsize)
        except (IndexError, TypeError, ValueError):
            return container
    return None


def _contraction(left: Chunk, right: Chunk, axes: Any) -> tuple[Chunk, float]:
    """``tensordot(left, right, axes)``: its output and its multiply-adds."""
    if isinstance(axes, int):
        left_axes = tuple(range(len(left.shape) - axes, len(left.shape)))
        right_axes = tuple(range(axes))
    else:
        left_axes, right_axes = ((axis,) if isinstance(axis, int) else tuple(axis) for axis in axes)
    left_axes = tuple(axis % len(left.shape) for axis in left_axes)
    right_axes = tuple(axis % len(right.shape) for axis in right_axes)
    kept_left = [size for axis, size in enumerate(left.shape) if axis not in left_axes]
    kept_right = [size for axis, size in enumerate(right.shape) if axis not in right_axes]
    flops = math.prod(left.shape) * math.prod(kept_right)
    return Chunk(tuple(kept_left + kept_right), max(left.itemsize, right.itemsize)), flops


def _dot(left: Chunk, right: Chunk) -> tuple[Chunk, float]:
    if len(right.shape) == 1:
        return _contraction(left, right, ((len(left.shape) - 1,), (0,)))
    return _contraction(left, right, ((len(left.shape) - 1,), (len(right.shape) - 2,)))


def _concatenate(arrays: Any, axis: int) -> Any:
    chunks = [array for array in arrays if isinstance(array, Chunk)]
    if not chunks:
        return None
    shape = list(chunks[0].shape)
    if not shape:
        return chunks[0]
    axis %= len(shape)
    shape[axis] = sum(chunk.shape[axis] for chunk in chunks if len(chunk.shape) > axis)
    return Chunk(tuple(shape), chunks[0].itemsize)


def _nested_concatenate(arrays: Any, axes: list[int]) -> Any:
    """Dask's ``_concatenate2``: nested lists, one level per axis."""
    if not axes or not isinstance(arrays, (list, tuple)):
        return arrays
    inner = [_nested_concatenate(item, axes[1:]) for item in arrays]
    return _concatenate(inner, axes[0])


def _reduce(array: Chunk, axis: Any, keepdims: bool) -> Chunk:
    if axis is None:
        axes = set(range(len(array.shape)))
    else:
        axes = {item % len(array.shape) for item in ((axis,) if isinstance(axis, int) else axis)}
    shape = tuple(
        (1 if keepdims else None) if position in axes else size
        for position, size in enumerate(array.shape)
    )
    return Chunk(tuple(size for size in shape if size is not None), array.itemsize)


_REDUCTIONS = {
    "sum", "nansum", "prod", "nanprod", "max", "min", "nanmax", "nanmin", "amax", "amin",
    "mean", "nanmean", "any", "all", "argmax", "argmin", "chunk_max", "chunk_min",
}  # fmt: skip
_CONTRACTIONS = {"tensordot", "_tensordot", "dot", "matmul", "_matmul"}
_CONCATENATIONS = {
    "vstack", "hstack", "concatenate", "_concatenate2", "concatenate3", "finalize", "stack",
}  # fmt: skip


def apply(function: Any, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, Call]:
    """A function call's output (abstract) and its cost features; a call no rule fits (or
    whose arguments a rule did not expect) counts as elementwise."""
    kwargs = {**_bound_keywords(function), **kwargs}
    arrays = [chunk for value in (*args, *kwargs.values()) for chunk in _chunks_in(value)]
    read = sum(chunk.nbytes for chunk in arrays)
    try:
        family, output, flops = _rule(_function_name(function), function, args, kwargs, arrays)
    except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError):
        family, output, flops = "elementwise", _broadcast(arrays), 0.0
    panel = 0.0
    if family in ("qr", "svd") and len(arrays[0].shape) == 2:
        rows, columns = max(arrays[0].shape), min(arrays[0].shape)
        panel = float(rows * columns * min(columns, LAPACK_PANEL_COLUMNS))
    return output, Call(family, read + value_bytes(output) if arrays else 0, flops, panel)


def _rule(
    name: str, function: Any, args: list[Any], kwargs: dict[str, Any], arrays: list[Chunk]
) -> tuple[str, Any, float]:
    """The family, output and flops of one call, by its function."""
    flops = 0.0
    family = "elementwise"
    output: Any
    first = args[0] if args else None
    if name in ("_apply_random", "_apply_random_func") and len(args) > 3:
        size = args[3]
        size = (size,) if isinstance(size, int) else tuple(size or ())
        family, output = "random", Chunk(size, 8)
    elif function in (tuple, list) and len(args) == 1 and isinstance(first, (tuple, list)):
        family, output = "getitem", function(first)
    elif name == "getitem" and len(args) == 2:
        family, output = "getitem", _getitem(first, args[1])
    elif name in ("qr", "_wrapped_qr") and isinstance(first, Chunk) and len(first.shape) == 2:
        rows, columns = first.shape
        inner = min(rows, columns)
        family, flops = "qr", float(rows * columns * inner)
        output = (Chunk((rows, inner), first.itemsize), Chunk((inner, columns), first.itemsize))
    elif name in ("svd", "_wrapped_svd") and isinstance(first, Chunk) and len(first.shape) == 2:
        rows, columns = first.shape
        inner = min(rows, columns)
        family, flops = "svd", float(rows * columns * inner)
        output = (
            Chunk((rows, inner), first.itemsize),
            Chunk((inner,), first.itemsize),
            Chunk((inner, columns), first.itemsize),
        )
    elif (
        name in _CONTRACTIONS
        and len(args) >= 2
        and all(isinstance(value, Chunk) for value in args[:2])
    ):
        left, right = args[0], args[1]
        family = "contraction"
        if name in ("tensordot", "_tensordot"):
            axes = args[2] if len(args) > 2 else kwargs.get("axes", 2)
            output, flops = _contraction(left, right, axes)
            if name == "_tensordot" and not isinstance(axes, int):
                # Dask keeps each contracted axis of the left chunk as a length-one axis.
                shape = list(output.shape)
                for axis in sorted(axis % len(left.shape) for axis in axes[0]):
                    shape.insert(axis, 1)
                output = Chunk(tuple(shape), output.itemsize)
        else:
            output, flops = _dot(left, right)
            if name == "_matmul":
                # Dask's block product keeps a length-one axis for the later sum of blocks.
                shape = output.shape
                output = Chunk((*shape[:-1], 1, shape[-1]), output.itemsize)
    elif name == "_chunk_sum" and isinstance(first, (Chunk, list)):
        # A sum of blocks of equal shape whose ``axis`` has length one (after ``_matmul``).
        family = "reduction"
        output = first if isinstance(first, Chunk) else _chunks_in(first)[0]
        if not kwargs.get("keepdims") and kwargs.get("axis") is not None:
            output = _reduce(output, kwargs["axis"], False)
    elif name in ("mean_chunk", "moment_chunk") and isinstance(first, Chunk):
        # Dask's mean and moments carry partial counts and totals in a dict.
        family = "reduction"
        reduced = _reduce(first, kwargs.get("axis"), bool(kwargs.get("keepdims", False)))
        output = _partials(name, reduced, kwargs)
    elif name in ("mean_combine", "moment_combine", "mean_agg", "moment_agg") and arrays:
        # Their inputs are the partials' dicts, nested in lists: the totals keep their axes.
        family = "reduction"
        total = _first_total(first)
        if "combine" in name:
            output = _partials(name, total, kwargs)
        else:
            output = _reduce(total, kwargs.get("axis"), bool(kwargs.get("keepdims", False)))
    elif name in _CONCATENATIONS and isinstance(first, (list, tuple)):
        family = "concatenate"
        if name in ("concatenate3", "finalize"):
            # Nested lists of blocks, one level per axis (an array's finalize).
            depth, level = 0, first
            while isinstance(level, (list, tuple)) and level:
                depth, level = depth + 1, level[0]
            output = _nested_concatenate(first, list(range(depth)))
        elif name == "_concatenate2":
            output = _nested_concatenate(first, list(kwargs.get("axes") or [0]))
        elif name == "hstack":
            output = _concatenate(first, 1 if len(_chunks_in(first)[0].shape) > 1 else 0)
        elif name == "stack":
            stacked = _chunks_in(first)
            output = Chunk((len(stacked), *stacked[0].shape), stacked[0].itemsize)
        else:
            output = _concatenate(first, kwargs.get("axis", 0))
    elif isinstance(first, Chunk) and (
        name in _REDUCTIONS or ("axis" in kwargs and "keepdims" in kwargs)
    ):
        family = "reduction"
        output = _reduce(first, kwargs.get("axis"), bool(kwargs.get("keepdims", False)))
    elif name == "transpose" and isinstance(first, Chunk):
        axes = kwargs.get("axes") or (args[1] if len(args) > 1 else None)
        order = tuple(axes) if axes else tuple(reversed(range(len(first.shape))))
        output = Chunk(tuple(first.shape[axis] for axis in order), first.itemsize)
    elif name == "_identity_cast":
        output = kwargs.get("typ", list)(args) if kwargs.get("typ") in (list, tuple) else args
    else:
        output = _broadcast(arrays)
    return family, output, flops


def _first_total(value: Any) -> Chunk:
    while isinstance(value, (list, tuple)):
        value = value[0]
    return value["total"]


def _partials(name: str, reduced: Chunk, kwargs: dict[str, Any]) -> dict[str, Chunk]:
    """The partial counts and totals of a mean (and a moment's central moments, ``M``)."""
    partials = {"n": reduced, "total": reduced}
    if name.startswith("moment"):
        order = int(kwargs.get("order", 2))
        partials["M"] = Chunk((*reduced.shape, order - 1), reduced.itemsize)
    return partials


def _broadcast(arrays: list[Chunk]) -> Any:
    if not arrays:
        return None
    import numpy as np

    try:
        shape = np.broadcast_shapes(*(chunk.shape for chunk in arrays))
    except ValueError:
        return max(arrays, key=lambda chunk: chunk.nbytes)
    return Chunk(tuple(shape), max(chunk.itemsize for chunk in arrays))


class _Evaluator:
    """Evaluates one graph node abstractly, collecting its calls."""

    def __init__(self, values: Mapping[Any, Any]) -> None:
        self.values = values
        self.calls: list[Call] = []

    def node(self, node: Any, local: Mapping[Any, Any]) -> Any:
        if isinstance(node, TaskRef):
            return self._lookup(node.key, local)
        if isinstance(node, Alias):
            return self._lookup(node.target, local)
        if isinstance(node, DataNode):
            return self.literal(node.value)
        if isinstance(node, NestedContainer):
            items = [self.node(item, local) for item in node.args]
            return dict(items) if node.klass is dict else list(items)
        if isinstance(node, Task):
            function = node.func
            if _function_name(function) == "_execute_subgraph":
                return self.subgraph(node, local)
            args = [self.node(item, local) for item in node.args]
            kwargs = {name: self.node(item, local) for name, item in node.kwargs.items()}
            if type(function).__name__ == "Compose":
                return self.compose(function, args, kwargs)
            output, call = apply(function, args, kwargs)
            self.calls.append(call)
            return output
        return self.literal(node)

    def _lookup(self, key: Any, local: Mapping[Any, Any]) -> Any:
        if key in local:
            return local[key]
        return self.values.get(key)

    def literal(self, value: Any) -> Any:
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            return Chunk(tuple(value.shape), int(value.dtype.itemsize))
        if isinstance(value, (list, tuple)):
            return type(value)(self.literal(item) for item in value)
        return value

    def compose(self, function: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        output, call = apply(function.first, args, kwargs)
        self.calls.append(call)
        for step in function.funcs:
            output, call = apply(step, [output], {})
            self.calls.append(call)
        return output

    def subgraph(self, node: Task, local: Mapping[Any, Any]) -> Any:
        """A fused task: its inner graph evaluated in dependency order."""
        inner, output_key, input_keys, *dependencies = node.args
        inner_graph = inner.value if isinstance(inner, DataNode) else inner
        output_key = self.literal(getattr(output_key, "value", output_key))
        input_keys = getattr(input_keys, "value", input_keys)
        scope = dict(
            zip(input_keys, (self.node(item, local) for item in dependencies), strict=False)
        )

        def inner_dependencies(key: Any) -> list[Any]:
            depends = getattr(inner_graph[key], "dependencies", ())
            return [dependency for dependency in depends if dependency in inner_graph]

        for key in _order(inner_graph, inner_dependencies):
            scope[key] = self.node(inner_graph[key], scope)
        return scope.get(output_key)


def _order(roots: Iterable[Any], dependencies_of: Callable[[Any], Iterable[Any]]) -> list[Any]:
    """Every node reachable from ``roots``, each after the nodes it depends on."""
    ordered: list[Any] = []
    seen: set = set()
    for root in roots:
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                ordered.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((dependency, False) for dependency in dependencies_of(node))
    return ordered


def annotated_chunks(collection: Any) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Chunk sizes by layer name, as Dask records them on an array collection's layers."""
    try:
        graph = collection.__dask_graph__()
    except (AttributeError, TypeError):
        return {}
    chunks = {}
    for name, layer in getattr(graph, "layers", {}).items():
        annotations = getattr(layer, "collection_annotations", None) or {}
        if "chunks" in annotations:
            chunks[name] = annotations["chunks"]
    return chunks


def evaluate(
    keys: list[Any], nodes: list[Any], dependencies: list[list[int]], collection: Any = None
) -> tuple[list[Any], list[list[Call]]]:
    """Each task's output (abstract) and calls, by task number."""
    layers = annotated_chunks(collection) if collection is not None else {}
    order = _order(range(len(keys)), dependencies.__getitem__)
    values: dict[Any, Any] = {}
    outputs: list[Any] = [None] * len(keys)
    calls: list[list[Call]] = [[] for _ in keys]
    for number in order:
        evaluator = _Evaluator(values)
        output = evaluator.node(nodes[number], {})
        output = _annotated(keys[number], output, layers)
        values[keys[number]] = outputs[number] = output
        calls[number] = evaluator.calls
    return outputs, calls


def _annotated(key: Any, output: Any, layers: Mapping[str, Any]) -> Any:
    """The evaluated output, else the chunk a layer's metadata gives for ``key``."""
    if not (isinstance(key, tuple) and key and key[0] in layers):
        return output
    chunks = layers[key[0]]
    index = key[1:]
    if len(index) != len(chunks) or isinstance(output, (Chunk, tuple, list, dict)):
        # An evaluated chunk wins: the layers of a reduction's first step record the chunks
        # of its input, not the reduced ones.
        return output
    try:
        shape = tuple(chunks[axis][position] for axis, position in enumerate(index))
    except (IndexError, TypeError):
        return output
    if any(isinstance(size, float) and math.isnan(size) for size in shape):
        return output
    itemsize = output.itemsize if isinstance(output, Chunk) else 8
    return Chunk(tuple(int(size) for size in shape), itemsize)


@dataclasses.dataclass
class ArrayCostModel:
    """Seconds per call by family (``per_call``, ``per_byte``, ``per_flop``), fitted here."""

    coefficients: dict[str, list[float]]
    measured: str = ""

    @classmethod
    def load(cls, path: Path = COEFFICIENTS_PATH) -> ArrayCostModel:
        data = json.loads(path.read_text())
        return cls(data["coefficients"], data.get("measured", ""))

    def seconds(self, calls: list[Call]) -> float:
        total = 0.0
        for call in calls:
            per_call, per_byte, per_flop, per_panel = self.coefficients.get(
                call.family, self.coefficients["elementwise"]
            )
            total += (
                per_call + per_byte * call.bytes + per_flop * call.flops + per_panel * call.panel
            )
        return total


def features(calls: list[Call]) -> list[float]:
    """A task's row of the calibration's design matrix: per family, its calls, bytes, flops."""
    row = [0.0] * (len(FAMILIES) * len(FEATURES))
    for call in calls:
        base = FAMILIES.index(call.family) * len(FEATURES)
        row[base] += 1.0
        row[base + 1] += call.bytes
        row[base + 2] += call.flops
        row[base + 3] += call.panel
    return row


def metadata_costs(
    collection: Any, graph: Any, model: ArrayCostModel | None = None
) -> tuple[list[float], list[int]]:
    """Each task's predicted seconds and output bytes, by task number, from metadata alone."""
    model = model or ArrayCostModel.load()
    outputs, calls = evaluate(graph.keys, graph.nodes, graph.dependencies, collection)
    return [model.seconds(task) for task in calls], [value_bytes(value) for value in outputs]


# ---- calibration -------------------------------------------------------------------------


def calibration_workloads(small: bool = False) -> list[tuple[str, Any]]:
    """Small arrays of the families' operations, at several chunk shapes."""
    import dask.array as da

    state = da.random.RandomState(1)
    workloads: list[tuple[str, Any]] = []
    scale = 2 if small else 1
    for chunk in (500, 1_000, 2_000 // scale):
        x = state.random((chunk * 2, chunk * 2), chunks=(chunk, chunk))
        workloads.append((f"matmul-{chunk}", (x @ x.T).sum()))
        workloads.append((f"elementwise-{chunk}", (x * 2 + x.T).mean(axis=0)))
    for rows, columns in ((10_000, 100), (65_536 // scale, 128), (5_000, 500)):
        x = state.random((rows * 4, columns), chunks=(rows, columns))
        workloads.append((f"tsqr-{rows}x{columns}", da.linalg.svd(x)[1]))
        workloads.append((f"svd-compressed-{rows}x{columns}", da.linalg.svd_compressed(
            x, k=5, seed=0)[1]))  # fmt: skip
    x = state.random((4_000, 4_000), chunks=(2_000, 2_000))
    workloads.append(("square-svd-compressed", da.linalg.svd_compressed(x, k=5, seed=0)[1]))
    x = state.random((40_000, 1_000), chunks=(10_000, 1_000))
    workloads.append(("sum", x.sum(axis=1).sum()))
    return workloads


def nonnegative_least_squares(matrix: Any, target: Any) -> Any:
    """Least squares with coefficients >= 0 (Lawson and Hanson's active set method)."""
    import numpy as np

    columns = matrix.shape[1]
    solution = np.zeros(columns)
    passive = np.zeros(columns, dtype=bool)
    for _ in range(3 * columns):
        gradient = matrix.T @ (target - matrix @ solution)
        candidates = np.where(~passive & (gradient > 1e-12 * np.abs(gradient).max(initial=1)))[0]
        if candidates.size == 0:
            break
        passive[candidates[np.argmax(gradient[candidates])]] = True
        while True:
            trial = np.zeros(columns)
            trial[passive] = np.linalg.lstsq(matrix[:, passive], target, rcond=None)[0]
            if (trial[passive] > 0).all():
                solution = trial
                break
            negative = passive & (trial <= 0)
            steps = solution[negative] / (solution[negative] - trial[negative])
            step = steps.min() if steps.size else 0.0
            solution = solution + step * (trial - solution)
            passive &= solution > 1e-15
            solution[~passive] = 0.0
    return solution


def calibrate(
    small: bool = False, runs: int = 2, workloads: list[tuple[str, Any]] | None = None
) -> tuple[ArrayCostModel, list[dict]]:
    """Fit the coefficients on real runs here (of ``workloads``, by default
    :func:`calibration_workloads`); each workload's measured and predicted task seconds
    (summed) for the table."""
    import dask
    import numpy as np

    from dask_serverless import LocalCluster
    from dask_serverless.simulation import _graph_of

    rows: list[list[float]] = []
    targets: list[float] = []
    parts: list[tuple[str, int, int]] = []
    with LocalCluster() as cluster:
        for label, collection in workloads or calibration_workloads(small):
            graph = _graph_of(collection)
            _, calls = evaluate(graph.keys, graph.nodes, graph.dependencies, collection)
            by_key = {str(key): number for number, key in enumerate(graph.keys)}
            dask.compute(collection, scheduler=cluster.get)  # imports, warm instances
            durations: dict[int, list[float]] = {}
            for _ in range(runs):
                dask.compute(collection, scheduler=cluster.get)
                tasks = cluster.last_run.tasks
                for key, seconds in zip(tasks["key"], tasks["duration_s"], strict=True):
                    if str(key) in by_key:
                        durations.setdefault(by_key[str(key)], []).append(float(seconds))
            start = len(targets)
            for number, measured in durations.items():
                if calls[number]:
                    rows.append(features(calls[number]))
                    targets.append(min(measured))
            parts.append((label, start, len(targets)))
    matrix, target = np.array(rows), np.array(targets)
    # Each column scaled to unit size, so that bytes and flops weigh alike in the fit, and
    # each task's row divided by its measured time plus 0.1 s: relative errors for the long
    # tasks, so that a few of them do not decide the costs of the many short ones, absolute
    # ones for tasks of milliseconds, whose measures are mostly noise.
    scale = np.where(matrix.max(axis=0) > 0, matrix.max(axis=0), 1.0)
    weight = 1.0 / (target + 0.1)[:, None]
    solution = nonnegative_least_squares(matrix / scale * weight, target * weight[:, 0]) / scale
    width = len(FEATURES)
    coefficients = {
        family: [float(value) for value in solution[index * width : (index + 1) * width]]
        for index, family in enumerate(FAMILIES)
    }
    machine = f"{platform.machine()}, {platform.processor() or platform.system()}"
    model = ArrayCostModel(coefficients, f"{datetime.date.today()} on {machine}")
    predicted = matrix @ solution
    table = [
        {
            "workload": label,
            "tasks": end - start,
            "measured s": float(target[start:end].sum()),
            "predicted s": float(predicted[start:end].sum()),
        }
        for label, start, end in parts
    ]
    return model, table


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dask_serverless.simulation.arrays")
    parser.add_argument("--calibrate", action="store_true", help="fit and save coefficients")
    parser.add_argument("--small", action="store_true", help="smaller calibration arrays")
    parser.add_argument("--runs", type=int, default=2)
    options = parser.parse_args(arguments)
    if not options.calibrate:
        model = ArrayCostModel.load()
        print(f"coefficients measured {model.measured}:")
        for family, values in model.coefficients.items():
            print(f"  {family:12} " + "  ".join(f"{v:.3e}" for v in values))
        return 0
    model, table = calibrate(options.small, options.runs)
    print("| workload | tasks | measured task s | predicted task s | error |")
    print("| --- | --- | --- | --- | --- |")
    for row in table:
        error = (row["predicted s"] - row["measured s"]) / row["measured s"]
        print(
            f"| {row['workload']} | {row['tasks']} | {row['measured s']:.3f} | "
            f"{row['predicted s']:.3f} | {error:+.1%} |"
        )
    data = {"measured": model.measured, "features": list(FEATURES), "coefficients": {
        family: values for family, values in model.coefficients.items()}}  # fmt: skip
    COEFFICIENTS_PATH.write_text(json.dumps(data, indent=1) + "\n")
    print(f"saved {COEFFICIENTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
