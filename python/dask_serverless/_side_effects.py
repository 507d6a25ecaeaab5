"""Graphs whose tasks write into the caller's memory, refused with advice.

``da.store(x, target)`` with a NumPy array (or ``np.memmap``) as target makes each task write
its block into ``target``. Dask's threaded and synchronous schedulers run those tasks in the
caller's process, so the caller's array fills up. Functions get a *copy* of the target with
their tasks (so does a worker of Dask's ``processes`` scheduler), write into it, and the
caller's array stays unchanged: a silently wrong result. Such graphs are refused before any
function runs.

Targets that live outside the process (a zarr array in an object store) are not concerned.
"""

from __future__ import annotations

import sys
from typing import Any

from dask._task_spec import Alias, DataNode, Task, TaskRef

from dask_serverless.errors import UnsupportedGraphError


def refuse_stores_into_caller_memory(graph: dict) -> None:
    """Raises ``UnsupportedGraphError`` when a task of ``graph`` stores into an in-memory
    NumPy array of the caller."""
    core = sys.modules.get("dask.array.core")
    if core is None:
        return
    store = getattr(core, "load_store_chunk", None)
    if store is None:
        return
    from dask._task_spec import _execute_subgraph

    for key, node in graph.items():
        if not isinstance(node, Task):
            continue
        if node.func is store:
            target = _resolve(_out_argument(node), graph, {})
        elif node.func is _execute_subgraph:
            target = _target_in_subgraph(node, store, graph)
        else:
            continue
        if _in_memory_array(target):
            raise UnsupportedGraphError(
                f"task {key!r} stores into a NumPy array of this process (da.store with an "
                "in-memory target): each function would write into its own copy, and the "
                "array would stay unchanged (Dask's processes scheduler loses these writes "
                "too). Compute the values and assign them instead (target[...] = "
                "x.compute()), or store into a target the functions share, such as a zarr "
                "array in an object store."
            )


def _out_argument(task: Task) -> Any:
    if "out" in task.kwargs:
        return task.kwargs["out"]
    return task.args[1] if len(task.args) > 1 else None


def _target_in_subgraph(node: Task, store: Any, graph: dict) -> Any:
    inner, _output, inputs, *dependencies = node.args
    if not isinstance(inner, dict):
        return None
    outer = dict(zip(inputs, dependencies, strict=False)) if isinstance(inputs, tuple) else {}
    for inner_node in inner.values():
        if isinstance(inner_node, Task) and inner_node.func is store:
            target = _resolve(_out_argument(inner_node), graph, outer)
            if _in_memory_array(target):
                return target
    return None


def _resolve(argument: Any, graph: dict, inputs: dict) -> Any:
    """The value an argument stands for, when it is a literal of the graph."""
    for _ in range(8):
        if isinstance(argument, DataNode):
            return argument.value
        if isinstance(argument, TaskRef | Alias):
            key = argument.key if isinstance(argument, TaskRef) else argument.target
            if key in inputs:
                argument = inputs[key]
            elif key in graph:
                argument = graph[key]
            else:
                return None
        else:
            return argument
    return None


def _in_memory_array(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)
