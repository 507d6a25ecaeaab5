//! dask-serverless-graph (under construction).
