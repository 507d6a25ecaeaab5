//! Python buffers over Rust bytes and Rust bytes over Python buffers, both without a copy.
//!
//! * [`Buffer`] exports bytes read from a store to Python: `pickle.loads(stream, buffers=[...])`
//!   builds NumPy arrays directly on the store's memory (for the shared-memory store, a private
//!   copy-on-write map of the object). The memory is exported **writable**: every store hands out
//!   bytes that belong to the reader (`Store::get`), so a task may write into an input, or a
//!   user into a result, without changing the stored object or what another task reads — as
//!   with Dask's local schedulers — and a page is copied only when written.
//! * [`chunks`] wraps the buffers of a value being stored (the pickle stream and NumPy's
//!   out-of-band buffers) as [`Bytes`] that keep the Python buffer pinned, so storing a value of
//!   size S needs no second S in memory.

use std::os::raw::{c_int, c_void};

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
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
        let bytes = &slf.get().bytes;
        // SAFETY: `view` is valid per the buffer protocol; PyBuffer_FillInfo takes a new
        // reference to `slf`, which keeps `bytes` alive while the view exists. The memory is
        // the reader's own (see the module documentation) and no Rust code reads it once it is
        // exported, so Python may write into it.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut c_void,
                bytes.len() as ffi::Py_ssize_t,
                0,
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

/// A contiguous Python buffer, held so that its memory can be read without the GIL.
struct PinnedBuffer(PyBuffer<u8>);

impl AsRef<[u8]> for PinnedBuffer {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the buffer is C-contiguous (checked in `chunks`) and stays valid and pinned
        // until `PyBuffer` is released, when this value drops.
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr() as *const u8, self.0.len_bytes()) }
    }
}

/// Python bytes-like objects as chunks, without copying them.
pub(crate) fn chunks(parts: &[Bound<'_, PyAny>]) -> PyResult<Vec<Bytes>> {
    parts
        .iter()
        .map(|part| {
            let buffer = PyBuffer::<u8>::get(part)?;
            if !buffer.is_c_contiguous() {
                return Err(PyBufferError::new_err(
                    "a part of a value is not a contiguous buffer",
                ));
            }
            Ok(Bytes::from_owner(PinnedBuffer(buffer)))
        })
        .collect()
}
