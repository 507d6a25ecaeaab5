"""Exceptions raised by dask-serverless.

A task's own exception always reaches the caller as itself (same type, same message); the
classes here describe what went wrong *around* the tasks.
"""

from __future__ import annotations


class ServerlessError(RuntimeError):
    """Base class of the engine's own errors."""


class SerializationError(ServerlessError, TypeError):
    """A task, its arguments or its result cannot be pickled to cross to a function."""


class FunctionError(ServerlessError):
    """The platform stopped a function: memory size exceeded, timeout, or the process died."""

    def __init__(self, message: str, error_type: str = "", cluster: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.cluster = cluster


class FunctionMemoryError(FunctionError, MemoryError):
    """A function used more memory than its memory size."""


class FunctionTimeoutError(FunctionError, TimeoutError):
    """A function ran longer than its timeout."""


class RunLostError(ServerlessError):
    """Nothing was heard of a run for longer than any function may live."""


class RemoteTaskError(ServerlessError):
    """A task raised an exception that could not be rebuilt in the client (not picklable)."""
