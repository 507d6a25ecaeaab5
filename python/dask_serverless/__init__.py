"""dask-serverless: run any Dask computation on function-as-a-service platforms.

>>> import dask.array as da
>>> from dask_serverless import LocalCluster
>>> x = da.random.RandomState(42).random((1000, 1000), chunks=(100, 100))
>>> with LocalCluster():
...     print(x.mean().compute())  # doctest: +SKIP
"""

from dask_serverless.cluster import LocalCluster
from dask_serverless.errors import (
    FunctionError,
    FunctionMemoryError,
    FunctionTimeoutError,
    RemoteTaskError,
    RunLostError,
    SerializationError,
    ServerlessError,
)
from dask_serverless.lambda_cluster import LambdaCluster

__all__ = [
    "FunctionError",
    "FunctionMemoryError",
    "FunctionTimeoutError",
    "LambdaCluster",
    "LocalCluster",
    "RemoteTaskError",
    "RunLostError",
    "SerializationError",
    "ServerlessError",
]
__version__ = "0.1.0"
