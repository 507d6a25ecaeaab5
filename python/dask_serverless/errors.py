"""Exceptions raised by dask-serverless.

A task's own exception always reaches the caller as itself (same type, same message); the
classes here describe what went wrong *around* the tasks. Every one derives from
:class:`ServerlessError` and also from the standard exception a caller would catch for that
kind of problem (``SerializationError`` is a ``TypeError``, ``FunctionMemoryError`` a
``MemoryError``, ``StoreUnavailableError`` a ``ConnectionError``...). The native module raises
these classes itself.
"""

from __future__ import annotations


class ServerlessError(RuntimeError):
    """Base class of the engine's own errors."""


class ConfigurationError(ServerlessError, ValueError):
    """An argument or setting is invalid; the message gives the valid range."""


class GraphValidationError(ServerlessError, ValueError):
    """The graph has a cycle or depends on a key nobody defines."""


class UnsupportedGraphError(ServerlessError, ValueError):
    """The graph needs something functions cannot offer (a dask.distributed cluster)."""


class SerializationError(ServerlessError, TypeError):
    """A task, its arguments or its result cannot be pickled to cross to a function."""


class FunctionError(ServerlessError):
    """The platform stopped a function: memory size exceeded, timeout, or the process died.

    ``error_type`` is the platform's name for it (``Runtime.ExitError``...) and ``batch`` the
    batch of tasks that was running, when known.
    """

    def __init__(self, message: str, error_type: str = "", batch: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.batch = batch


class FunctionMemoryError(FunctionError, MemoryError):
    """A function used more memory than its memory size."""


class FunctionTimeoutError(FunctionError, TimeoutError):
    """A function ran longer than its timeout (the limit of one invocation, which may run
    many tasks)."""


class RunLostError(ServerlessError):
    """Nothing was heard of a run for longer than any function may live."""


class RemoteTaskError(ServerlessError):
    """A task raised an exception that could not be rebuilt in the client (not picklable)."""


class StoreError(ServerlessError):
    """The store refused an operation or holds something unreadable."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be reached (server down, directory gone, wrong address)."""


class PlatformError(ServerlessError):
    """The function platform refused an operation."""


class PlatformUnavailableError(PlatformError, ConnectionError):
    """The function platform cannot be reached."""


class AwsConfigurationError(ServerlessError, ValueError):
    """Credentials, region or settings for AWS are missing or invalid."""


class AwsPermissionError(ServerlessError, PermissionError):
    """AWS denied an action; the message names the permission to grant."""


__all__ = [
    "AwsConfigurationError",
    "AwsPermissionError",
    "ConfigurationError",
    "FunctionError",
    "FunctionMemoryError",
    "FunctionTimeoutError",
    "GraphValidationError",
    "PlatformError",
    "PlatformUnavailableError",
    "RemoteTaskError",
    "RunLostError",
    "SerializationError",
    "ServerlessError",
    "StoreError",
    "StoreUnavailableError",
    "UnsupportedGraphError",
]
