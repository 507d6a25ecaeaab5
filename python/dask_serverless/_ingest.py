"""Ingest: from what Dask hands a scheduler to the compact structure the planner reads.

Dask (2025.4 and later) passes ``get`` either a mapping or an expression; both become a mapping
``{key: GraphNode}`` through ``__dask_graph__()`` and ``convert_legacy_graph`` (which also turns
legacy tuple tasks into ``Task`` nodes). The graph is culled to what the requested keys need,
tasks are numbered densely, and each task's dependencies become a list of numbers. Keys that
tasks reference but nobody defines are passed on as "missing": the planner rejects them with a
message that names both keys.

Two rewrites keep results equal to Dask's local schedulers:

* on-disk ``partd`` shuffles become shuffles through task outputs
  (:mod:`dask_serverless._shuffle`): functions share no disk;
* an output whose node is a literal (a ``DataNode``, or an alias of one) is not computed: the
  caller gets its own object back, as with the threaded scheduler.

And one refusal: a graph that stores into a NumPy array of the caller's process (``da.store``
with an in-memory target) would silently leave it unchanged, so it fails with advice
(:mod:`dask_serverless._side_effects`).

One fast path: graphs of ``dask.delayed`` objects. Their optimizer only culls (unless linear
fusion is switched on), through ``HighLevelGraph.cull``, which costs about 70 µs per task on
graphs with one layer per delayed object — seconds for 100,000 tasks. Ingest culls anyway, so
for those graphs it merges the layers itself and skips the optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
from dask._task_spec import Alias, DataNode, GraphNode, convert_legacy_graph
from dask.core import flatten

from dask_serverless._shuffle import rewrite_disk_shuffles
from dask_serverless._side_effects import refuse_stores_into_caller_memory


@dataclass
class IngestedGraph:
    """A culled graph with dense task numbers."""

    nodes: list[GraphNode]
    keys: list[Any]
    dependencies: list[list[int]]
    missing: list[Any]
    outputs: list[int]
    graph: dict
    #: Outputs that are literals, returned as they are (not computed).
    literals: dict

    @property
    def empty(self) -> bool:
        """Nothing to compute: every output is a literal."""
        return not self.keys


def as_task_graph(dsk: Any) -> dict:
    """``{key: GraphNode}`` from a mapping, a HighLevelGraph or an expression."""
    if not isinstance(dsk, Mapping):
        dsk = _unoptimized_delayed_graph(dsk) or dsk.__dask_graph__()
    graph = rewrite_disk_shuffles(convert_legacy_graph(dsk))
    refuse_stores_into_caller_memory(graph)
    return graph


def _unoptimized_delayed_graph(expression: Any) -> dict | None:
    """The merged layers of an expression made only of ``dask.delayed`` graphs whose optimizer
    would only cull; None for anything else."""
    from dask._expr import HLGExpr, _HLGExprSequence
    from dask.delayed import optimize as delayed_optimize

    if isinstance(expression, HLGExpr):
        parts = [expression]
    elif isinstance(expression, _HLGExprSequence):
        parts = list(expression.operands)
    else:
        return None
    if dask.config.get("optimization.fuse.delayed", False):
        return None
    for part in parts:
        if not isinstance(part, HLGExpr) or part.low_level_optimizer is not delayed_optimize:
            return None
    merged: dict = {}
    seen: set[int] = set()
    for part in parts:
        graph = part.hlg
        layers = getattr(graph, "layers", None)
        if layers is None:
            merged.update(graph)
            continue
        for layer in layers.values():
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            merged.update(getattr(layer, "mapping", layer))
    return merged


def flat_keys(keys: Any) -> list:
    return list(flatten(keys)) if isinstance(keys, list) else [keys]


def _literal(graph: dict, key: Any) -> DataNode | None:
    """The literal an output resolves to through aliases, if it is one."""
    node = graph[key]
    seen = 0
    while isinstance(node, Alias) and node.target in graph and seen < len(graph):
        node = graph[node.target]
        seen += 1
    return node if isinstance(node, DataNode) else None


def ingest(dsk: Any, keys: Any) -> IngestedGraph:
    graph = as_task_graph(dsk)
    requested = flat_keys(keys)
    for key in requested:
        if key not in graph:
            raise KeyError(key)
    literals: dict = {}
    outputs_keys = []
    for key in requested:
        literal = _literal(graph, key)
        if literal is None:
            outputs_keys.append(key)
        else:
            literals[key] = literal.value

    # Cull: every task the outputs need, numbered in discovery order; missing keys are
    # numbered after the tasks. A task's dependencies are a set, whose order changes with the
    # process's string hashing: they are sorted, so that the same graph gets the same task
    # numbers, and so the same plan, in every process (a seeded fault replays on the same
    # batches).
    index: dict[Any, int] = {}
    ordered: list[Any] = []
    missing_index: dict[Any, int] = {}
    # The dependencies of tasks that have several, sorted.
    sorted_dependencies: dict[Any, list[Any]] = {}
    for key in outputs_keys:
        if key not in index:
            index[key] = len(ordered)
            ordered.append(key)
    work = list(ordered)
    while work:
        key = work.pop()
        node = graph[key]
        dependencies = node.dependencies
        if len(dependencies) > 1:
            try:
                dependencies = sorted(dependencies)
            except TypeError:  # keys of mixed kinds: a str and a tuple
                dependencies = sorted(dependencies, key=str)
            sorted_dependencies[key] = dependencies
        for dependency in dependencies:
            if dependency in index or dependency in missing_index:
                continue
            if dependency in graph:
                index[dependency] = len(ordered)
                ordered.append(dependency)
                work.append(dependency)
            else:
                missing_index[dependency] = len(missing_index)

    task_count = len(ordered)
    nodes = [graph[key] for key in ordered]
    if missing_index:
        for key, number in missing_index.items():
            index[key] = task_count + number
    dependencies = [
        [index[dependency] for dependency in sorted_dependencies.get(key, node.dependencies)]
        for key, node in zip(ordered, nodes, strict=True)
    ]
    return IngestedGraph(
        nodes=nodes,
        keys=ordered,
        dependencies=dependencies,
        missing=list(missing_index),
        outputs=[index[key] for key in outputs_keys],
        graph=graph,
        literals=literals,
    )


def pack_results(keys: Any, values: dict) -> Any:
    """Results in the nesting of ``keys`` (lists become tuples, as Dask's own ``get`` does)."""
    if isinstance(keys, list):
        return tuple(pack_results(key, values) for key in keys)
    return values[keys]
