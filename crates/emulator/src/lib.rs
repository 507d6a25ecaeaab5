//! dask-serverless-emulator (under construction).
