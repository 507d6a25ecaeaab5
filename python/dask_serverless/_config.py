"""The caller's Dask configuration, carried to the functions.

Tasks read ``dask.config`` while they run (array slicing options, dataframe string
conversion, shuffle compression...). Dask's local schedulers run tasks in the caller's process,
so a task sees the caller's settings, including ``with dask.config.set(...)`` blocks around
the compute. A function starts with Dask's defaults instead, so every batch carries the
settings that differ from Dask's defaults (as flat dotted keys), and the handler applies them
while its tasks run. The scheduler itself is not carried: inside a function a nested compute
runs on Dask's synchronous scheduler.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import dask

# Settings that name the caller's scheduler: meaningless in a function.
NOT_CARRIED = ("scheduler", "get", "shuffle", "pool")


def configuration_changes() -> dict[str, Any]:
    """The caller's settings that differ from Dask's defaults, as ``{"a.b.c": value}``."""
    defaults = dask.config.merge(*dask.config.defaults)
    changes: dict[str, Any] = {}
    _differences(dask.config.config, defaults, "", changes)
    for key in [key for key in changes if key.split(".", 1)[0] in NOT_CARRIED]:
        del changes[key]
    for key, value in list(changes.items()):
        try:
            cloudpickle.dumps(value, protocol=pickle.DEFAULT_PROTOCOL)
        except Exception:  # noqa: BLE001 - a setting that cannot travel stays here
            del changes[key]
    return changes


def _differences(current: Any, default: Any, prefix: str, changes: dict[str, Any]) -> None:
    if isinstance(current, dict) and isinstance(default, dict):
        for key, value in current.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key not in default:
                changes[dotted] = value
            else:
                _differences(value, default[key], dotted, changes)
    elif current != default:
        changes[prefix] = current
