//! A read-only Python buffer over Rust bytes, without a copy.
//!
//! Objects read from the shared-memory store are memory maps; wrapping them here lets
//! `pickle.loads(stream, buffers=[...])` build NumPy arrays directly on the mapped memory.

use std::os::raw::{c_int, c_void};

use bytes::Bytes;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct Buffer {
    bytes: Bytes,
}

impl Buffer {
    pub(crate) fn new(bytes: Bytes) -> Buffer {
        Buffer { bytes }
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// # Safety
    /// Called by Python with a valid `view`; the exported memory lives as long as `self`,
    /// which the view holds a reference to.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("this buffer is read-only"));
        }
        let bytes = &slf.get().bytes;
        // SAFETY: `view` is valid per the buffer protocol; PyBuffer_FillInfo takes a new
        // reference to `slf`, which keeps `bytes` alive while the view exists.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut c_void,
                bytes.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }
}

/// Parts as a Python list of buffers.
pub(crate) fn buffers(py: Python<'_>, parts: Vec<Bytes>) -> PyResult<Vec<Py<Buffer>>> {
    parts
        .into_iter()
        .map(|part| Py::new(py, Buffer::new(part)))
        .collect()
}

/// Copies Python bytes-like objects into owned chunks.
pub(crate) fn chunks(parts: &[Bound<'_, PyAny>]) -> PyResult<Vec<Bytes>> {
    parts
        .iter()
        .map(|part| {
            let buffer = pyo3::buffer::PyBuffer::<u8>::get(part)?;
            Ok(Bytes::from(buffer.to_vec(part.py())?))
        })
        .collect()
}
