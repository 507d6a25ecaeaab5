"""The seed demo: the mean of a 10000 x 10000 random array on the local platform."""

import dask.array as da

from dask_serverless import LocalCluster

x = da.random.RandomState(42).random((10000, 10000), chunks=(1000, 1000))
with LocalCluster():
    print(x.mean().compute())  # 0.4999391524251242
