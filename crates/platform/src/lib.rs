//! dask-serverless-platform (under construction).
