//! dask-serverless-plan (under construction).
