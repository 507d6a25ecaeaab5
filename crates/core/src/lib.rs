//! dask-serverless-core (under construction).
