//! [`Payload`]: the bytes of one object as a list of chunks.
//!
//! A writer often has an object in pieces (a frame header, padding, pickled buffers). A payload
//! keeps the pieces as they are — reference-counted [`Bytes`], never copied — and a backend
//! writes them one after the other, so the stored object is their concatenation. Chunk
//! boundaries carry no meaning: reading the object back gives one contiguous [`Bytes`].

use bytes::{Bytes, BytesMut};

/// The content of one object: byte chunks concatenated on write.
#[derive(Debug, Clone, Default)]
pub struct Payload(Vec<Bytes>);

impl Payload {
    /// An empty payload (a zero-length object).
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// A payload made of `chunks`, in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        Self(chunks)
    }

    /// Appends a chunk at the end.
    pub fn push(&mut self, chunk: Bytes) {
        self.0.push(chunk);
    }

    /// Total length in bytes (the size of the stored object).
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Whether the object is zero bytes long.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.0
    }

    /// Takes the chunks out.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.0
    }

    /// The object as one contiguous buffer: no copy when there is at most one non-empty chunk,
    /// otherwise one copy.
    pub fn into_contiguous(self) -> Bytes {
        let mut non_empty = self.0.into_iter().filter(|chunk| !chunk.is_empty());
        let Some(first) = non_empty.next() else {
            return Bytes::new();
        };
        let Some(second) = non_empty.next() else {
            return first;
        };
        let rest: Vec<Bytes> = non_empty.collect();
        let length = first.len() + second.len() + rest.iter().map(Bytes::len).sum::<usize>();
        let mut buffer = BytesMut::with_capacity(length);
        buffer.extend_from_slice(&first);
        buffer.extend_from_slice(&second);
        for chunk in &rest {
            buffer.extend_from_slice(chunk);
        }
        buffer.freeze()
    }
}

impl From<Bytes> for Payload {
    fn from(chunk: Bytes) -> Self {
        Self(vec![chunk])
    }
}

impl From<Vec<u8>> for Payload {
    fn from(data: Vec<u8>) -> Self {
        Self(vec![Bytes::from(data)])
    }
}

impl From<&'static [u8]> for Payload {
    fn from(data: &'static [u8]) -> Self {
        Self(vec![Bytes::from_static(data)])
    }
}

impl From<&'static str> for Payload {
    fn from(text: &'static str) -> Self {
        Self(vec![Bytes::from_static(text.as_bytes())])
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Self(vec![Bytes::from(text)])
    }
}

impl From<Vec<Bytes>> for Payload {
    fn from(chunks: Vec<Bytes>) -> Self {
        Self(chunks)
    }
}

impl FromIterator<Bytes> for Payload {
    fn from_iter<I: IntoIterator<Item = Bytes>>(chunks: I) -> Self {
        Self(chunks.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_every_chunk() {
        let payload = Payload::from_chunks(vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
        ]);
        assert_eq!(payload.len(), 5);
        assert!(!payload.is_empty());
        assert!(Payload::from_chunks(vec![Bytes::new()]).is_empty());
        assert!(Payload::new().is_empty());
    }

    #[test]
    fn contiguous_concatenates_and_avoids_copying_one_chunk() {
        let single = Bytes::from(vec![1u8, 2, 3]);
        let pointer = single.as_ptr();
        let contiguous = Payload::from_chunks(vec![Bytes::new(), single]).into_contiguous();
        assert_eq!(contiguous.as_ptr(), pointer);

        let payload = Payload::from_chunks(vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"c"),
            Bytes::new(),
            Bytes::from_static(b"def"),
        ]);
        assert_eq!(&payload.into_contiguous()[..], b"abcdef");
        assert!(Payload::new().into_contiguous().is_empty());
    }
}
