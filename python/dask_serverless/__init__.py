"""dask-serverless: run any Dask computation on function-as-a-service platforms.

>>> import dask.array as da
>>> from dask_serverless import LocalCluster
>>> x = da.random.RandomState(42).random((1000, 1000), chunks=(100, 100))
>>> with LocalCluster():
...     print(x.mean().compute())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dask_serverless.errors import (
    AwsConfigurationError,
    AwsPermissionError,
    ConfigurationError,
    FunctionError,
    FunctionMemoryError,
    FunctionTimeoutError,
    GraphValidationError,
    PlatformError,
    PlatformUnavailableError,
    RemoteTaskError,
    RunLostError,
    SerializationError,
    ServerlessError,
    StoreError,
    StoreUnavailableError,
    UnsupportedGraphError,
)

if TYPE_CHECKING:
    from dask_serverless.cluster import LocalCluster
    from dask_serverless.experiments import experiment
    from dask_serverless.lambda_cluster import LambdaCluster
    from dask_serverless.report_page import performance_report
    from dask_serverless.simulation import simulate

# The clusters and experiments import Dask: they load on first use, so that the
# `dask-serverless` command starts without it.
_LAZY = {
    "LocalCluster": "dask_serverless.cluster",
    "LambdaCluster": "dask_serverless.lambda_cluster",
    "experiment": "dask_serverless.experiments",
    "performance_report": "dask_serverless.report_page",
    "simulate": "dask_serverless.simulation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dask_serverless' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AwsConfigurationError",
    "AwsPermissionError",
    "ConfigurationError",
    "FunctionError",
    "FunctionMemoryError",
    "FunctionTimeoutError",
    "GraphValidationError",
    "LambdaCluster",
    "LocalCluster",
    "PlatformError",
    "PlatformUnavailableError",
    "RemoteTaskError",
    "RunLostError",
    "SerializationError",
    "ServerlessError",
    "StoreError",
    "StoreUnavailableError",
    "UnsupportedGraphError",
    "experiment",
    "performance_report",
    "simulate",
]
__version__ = "0.1.0"
