"""On-disk shuffles rewritten into shuffles that work across functions.

Dask's bag ``groupby`` and dataframe shuffles (``shuffle``, ``set_index``, ``merge``) default
to an on-disk ``partd`` shuffle when no distributed client is around: one task creates a
``partd.File`` (a temporary directory), every input partition *appends* its groups to it,
a barrier waits for all of them, and each output partition *collects* its group from the
files. That only works when every task shares one disk and one process keeps the directory
alive: functions share neither (a function drops the ``partd.File`` after its last local use,
and its ``__del__`` deletes the directory the others still write to).

The rewrite keeps the user's graph and its results — the same partitioning, the same order of
groups and of items — and moves the data through task outputs instead of files:

* the ``partd`` task becomes a constant (nothing is created on disk);
* each *appender* runs its original function against an in-memory recorder and returns what it
  appended, in order;
* for every output partition and every appender, a small *piece* task picks what that appender
  appended for that partition (so each value crosses a function boundary once);
* each *collector* rebuilds an in-memory ``partd`` of the same encoding, appends the pieces in
  the order of the input partitions, and runs its original function on it;
* the barrier, which only ordered the appends before the collects, is no longer needed by
  anyone and is culled (it stays, cheap, when it is itself an output).

Graphs are recognized by their functions (``dask.bag.core.collect``,
``dask.dataframe.shuffle.collect``) and by the ``partd`` task they read, so any graph that
routes data through a ``partd`` built from ``partd.File`` is rewritten, whichever collection
made it. A shuffle that needs a distributed cluster (``p2p``) is refused with a clear error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from dask._task_spec import Alias, DataNode, GraphNode, Task, TaskRef

from dask_serverless.errors import UnsupportedGraphError

# Above this many piece tasks, collectors read whole appender outputs instead.
MAX_PIECE_TASKS = 250_000


def rewrite_disk_shuffles(graph: dict) -> dict:
    """``graph`` with every on-disk shuffle made task-based; the same dict when it has none."""
    _refuse_p2p(graph)
    if "partd" not in sys.modules:
        # Nothing made a partd in this process, so no graph can hold one.
        return graph
    stores = [key for key, node in graph.items() if _names_a_store(key) and _is_disk_store(node)]
    if not stores:
        return graph
    # Dask's synchronous scheduler appends in the order of its priorities: so do we.
    from dask.order import order

    priorities = order(graph)
    rewritten = dict(graph)
    for store in stores:
        _rewrite_one(rewritten, store, priorities)
    return rewritten


def _names_a_store(key: Any) -> bool:
    """Dask names the partd task ``("partd-<token>",)`` (bags) or ``("zpartd-<token>",)``."""
    return (
        type(key) is tuple
        and len(key) == 1
        and isinstance(key[0], str)
        and key[0].startswith(("partd-", "zpartd-"))
    )


def _rewrite_one(graph: dict, store: Any, priorities: dict) -> None:
    outer_of: dict = {}
    for key in [key for key, node in graph.items() if store in node.dependencies]:
        for inner_key in _expand_fused(graph, key):
            outer_of[inner_key] = key
    readers = [key for key, node in graph.items() if key != store and store in node.dependencies]
    collectors = [key for key in readers if _collect_function(graph[key]) is not None]
    chosen = set(collectors)
    # Pieces are appended in the order the synchronous scheduler runs their appenders.
    appenders = sorted(
        (key for key in readers if key not in chosen),
        key=lambda key: (priorities.get(outer_of.get(key, key), -1), _order_of(key)),
    )
    if not collectors:
        return
    encoding = _encoding_of(graph[store])
    barriers = {
        dependency
        for key in collectors
        for dependency in graph[key].dependencies
        if dependency != store
    }
    graph[store] = DataNode(store, None)
    for key in appenders:
        graph[key] = _appender(graph[key], store)
    use_pieces = len(appenders) * len(collectors) <= MAX_PIECE_TASKS
    for key in collectors:
        node = graph[key]
        partition = node.args[1]
        if use_pieces:
            sources = []
            for position, appender in enumerate(appenders):
                piece = ("shuffle-piece", _key_text(store), position, _key_text(key))
                graph[piece] = Task(piece, _pick, TaskRef(appender), partition)
                sources.append(TaskRef(piece))
            picked = True
        else:
            sources = [TaskRef(appender) for appender in appenders]
            picked = False
        graph[key] = Task(
            key,
            _collect_in_memory,
            encoding,
            node.func,
            _substitute(node.args, store, barriers),
            partition,
            picked,
            *sources,
        )
    for barrier in barriers:
        # Nobody reads the barrier any more; as an output it still computes.
        node = graph.get(barrier)
        if isinstance(node, Task):
            graph[barrier] = Task(barrier, _barrier, *(TaskRef(key) for key in appenders))


def _key_text(key: Any) -> str:
    return str(key)


def _order_of(key: Any) -> tuple:
    """Orders ``(name, 0)``, ``(name, 1)``... by index, and anything else by its text."""
    if type(key) is tuple and key and all(type(part) is int for part in key[1:]):
        return (str(key[0]), key[1:])
    return (str(key), ())


def _expand_fused(graph: dict, key: Any) -> list:
    """Replaces a fused task (``Task(key, _execute_subgraph, inner, out, inputs, ...)``) by its
    inner tasks, so that the shuffle's own tasks are visible; the fused key becomes an alias of
    the inner output. Inner keys are the original keys of the graph: one that an outer node
    already holds is taken over only when that node merely aliases the fused task. Returns the
    inner keys (none when the task is not fused or cannot be expanded)."""
    from dask._task_spec import _execute_subgraph

    node = graph[key]
    if not (isinstance(node, Task) and node.func is _execute_subgraph):
        return []
    inner, output = node.args[0], node.args[1]
    if not isinstance(inner, dict):
        return []
    for inner_key in inner:
        existing = graph.get(inner_key)
        if existing is None or inner_key == key:
            continue
        if not (isinstance(existing, Alias) and existing.target == key):
            return []
    for inner_key, inner_node in inner.items():
        graph[inner_key] = inner_node
    if output != key:
        graph[key] = Alias(key, output)
    return list(inner)


def _is_disk_store(node: GraphNode) -> bool:
    """The task that creates a ``partd`` on disk (``partd.File``, possibly encoded)."""
    if not isinstance(node, Task):
        return False
    try:
        import partd
        from dask.dataframe.shuffle import maybe_buffered_partd
    except ImportError:
        return False
    for task in _nested_tasks(node):
        function = task.func
        if function is partd.File or isinstance(function, maybe_buffered_partd):
            return True
    return False


def _nested_tasks(node: Any) -> Iterator[Task]:
    if isinstance(node, Task):
        yield node
        for argument in (*node.args, *node.kwargs.values()):
            yield from _nested_tasks(argument)


def _collect_function(node: GraphNode) -> Any:
    if not isinstance(node, Task):
        return None
    known: list[Any] = []
    try:
        from dask.bag.core import collect as bag_collect

        known.append(bag_collect)
    except ImportError:
        pass
    try:
        from dask.dataframe.shuffle import collect as dataframe_collect

        known.append(dataframe_collect)
    except ImportError:
        pass
    return node.func if any(node.func is function for function in known) else None


def _encoding_of(node: Task) -> tuple[Any, str | None]:
    """How the shuffle encodes what it appends (a callable wrapping a raw ``partd``), and the
    dataframe shuffle's compression setting, if any."""
    from dask.dataframe.shuffle import maybe_buffered_partd

    for task in _nested_tasks(node):
        if isinstance(task.func, maybe_buffered_partd):
            return task.func.encode_cls, task.func.compression or None
    # Bags: ``partd.Python`` (pickled lists), possibly around compression; compression does
    # not change what comes back.
    import partd

    return partd.Python, None


def _is_reference(argument: Any, key: Any) -> bool:
    return (isinstance(argument, Alias) and argument.target == key) or (
        isinstance(argument, TaskRef) and argument.key == key
    )


def _substitute(arguments: tuple, store: Any, barriers: set) -> tuple:
    """Arguments with the store reference replaced by a placeholder and barriers by 0."""
    replaced: list[Any] = []
    for argument in arguments:
        if _is_reference(argument, store):
            replaced.append(_STORE)
        elif any(_is_reference(argument, barrier) for barrier in barriers):
            replaced.append(0)
        else:
            replaced.append(argument)
    return tuple(replaced)


def _appender(node: GraphNode, store: Any) -> GraphNode:
    if not isinstance(node, Task):
        return node
    arguments = tuple(_STORE if _is_reference(arg, store) else arg for arg in node.args)
    return Task(node.key, _record_appends, node.func, *arguments, **node.kwargs)


class _StorePlaceholder:
    """Stands for the shuffle's ``partd`` in rewritten tasks."""

    def __repr__(self) -> str:
        return "<partd>"

    def __reduce__(self) -> str:
        return "_STORE"


_STORE = _StorePlaceholder()


class _Recorder:
    """An in-memory stand-in for a ``partd`` that only records what is appended."""

    def __init__(self) -> None:
        self.appended: list[dict] = []

    def append(self, data: dict, **_options: Any) -> None:
        self.appended.append(data)

    def drop(self) -> None:
        self.appended.clear()

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def _record_appends(function: Any, *arguments: Any, **keywords: Any) -> list[dict]:
    recorder = _Recorder()
    function(*(recorder if argument is _STORE else argument for argument in arguments), **keywords)
    return recorder.appended


def _pick(appended: list[dict], partition: Any) -> list:
    return [data[partition] for data in appended if partition in data]


def _barrier(*_appended: Any) -> int:
    return 0


def _collect_in_memory(
    encoding: tuple[Any, str | None],
    function: Any,
    arguments: tuple,
    partition: Any,
    picked: bool,
    *sources: Any,
) -> Any:
    import partd

    encode, compression = encoding
    raw: Any = partd.Dict()
    if compression:
        # As Dask's own shuffle does: an unknown compression is an ImportError.
        try:
            raw = getattr(partd.compressed, compression)(raw)
        except AttributeError as error:
            raise ImportError(
                # Dask's own words, to the character.
                f"Not able to import and load {compression} as compression algorithm."
                "Please check if the library is installed and supported by Partd."
            ) from error
    store = encode(raw)
    for source in sources:
        values = source if picked else _pick(source, partition)
        for value in values:
            store.append({partition: value})
    return function(*(store if argument is _STORE else argument for argument in arguments))


def _refuse_p2p(graph: dict) -> None:
    if "distributed.shuffle" not in sys.modules:
        return
    for node in graph.values():
        if isinstance(node, Task):
            module = getattr(node.func, "__module__", "") or ""
            if module.startswith("distributed.shuffle"):
                raise UnsupportedGraphError(
                    f"task {node.key!r} belongs to a peer-to-peer ('p2p') shuffle, which needs "
                    "the workers of a dask.distributed cluster. Build the collection with "
                    "dask.config.set({'dataframe.shuffle.method': 'tasks'}) (the default "
                    "inside `with LocalCluster():`), or pass shuffle_method='tasks'."
                )
