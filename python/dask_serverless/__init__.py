"""dask-serverless: run any Dask computation on function-as-a-service platforms.

>>> import dask.array as da
>>> from dask_serverless import LocalCluster
>>> x = da.random.RandomState(42).random((1000, 1000), chunks=(100, 100))
>>> with LocalCluster():
...     print(x.mean().compute())  # doctest: +SKIP
"""

from dask_serverless.cluster import LocalCluster
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
from dask_serverless.lambda_cluster import LambdaCluster

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
]
__version__ = "0.1.0"
