"""Dask's own test suite run on dask-serverless: ``run.py`` (the driver) and ``plugin.py``."""
