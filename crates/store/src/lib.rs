//! dask-serverless-store (under construction).
