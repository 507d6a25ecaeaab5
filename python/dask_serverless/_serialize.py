"""Values as pickle protocol 5 parts: one pickle stream plus out-of-band buffers.

Large NumPy (and Arrow, pandas) buffers travel out of band: they are written to the store as
they are and read back without a copy (the store hands out memory maps). Functions, lambdas
and classes defined in ``__main__`` go through cloudpickle.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle


def dumps(value: Any) -> list:
    """Pickle ``value`` into ``[stream, buffer, ...]`` (bytes-like objects)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception:  # noqa: BLE001 - whatever pickle refuses, cloudpickle may take
        buffers = []
        stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return [stream, *(buffer.raw() for buffer in buffers)]


def loads(parts: list) -> Any:
    """Inverse of :func:`dumps`; buffers are used in place (no copy)."""
    return pickle.loads(parts[0], buffers=parts[1:])


def dumps_tasks(payload: Any) -> bytes:
    """Pickle a whole cluster of tasks at once."""
    return cloudpickle.dumps(payload, protocol=5)
