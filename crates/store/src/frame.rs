//! Framing of several byte parts into one object, with every part 64-byte aligned.
//!
//! Python stores a value as a pickle (protocol 5) stream plus its out-of-band buffers, and wants
//! to read the buffers back without copying them, aligned well enough for NumPy and SIMD. A
//! frame holds those parts in one object:
//!
//! ```text
//! offset 0        magic  b"DSF1"
//! offset 4        u32 little-endian: part count N
//! offset 8        N × u64 little-endian: length of each part, in order
//! then, for each part in order: zero bytes up to the next multiple of 64, then the part
//! ```
//!
//! The object ends right after the last part (or after the lengths when N is 0). The offset of
//! a part is therefore computed, not stored: start with the cursor after the lengths, and for
//! each part round the cursor up to a multiple of [`ALIGNMENT`], take `length` bytes and move
//! the cursor past them. Decoding requires the object length to equal the final cursor exactly.
//!
//! Invariants: [`encode`] never copies a part (the payload holds the caller's chunks, the header
//! and static padding); [`decode`] returns zero-copy slices of its input and rejects any
//! malformed input with [`StoreError::Corrupt`], never a panic. Alignment is relative to the
//! start of the object; when the object is memory mapped (the shared-memory store), its start
//! is page aligned, so each part is 64-byte aligned in memory too.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Payload, StoreError};

/// The first four bytes of every frame (format version 1).
pub const MAGIC: [u8; 4] = *b"DSF1";

/// The alignment of every part's start within the object, in bytes.
pub const ALIGNMENT: usize = 64;

static PADDING: [u8; ALIGNMENT] = [0; ALIGNMENT];

const FIXED_HEADER_LENGTH: usize = MAGIC.len() + size_of::<u32>();

/// Frames `parts` into one object. No part is copied.
///
/// # Panics
///
/// If there are more than `u32::MAX` parts.
pub fn encode(parts: Vec<Bytes>) -> Payload {
    let count = u32::try_from(parts.len()).expect("a frame holds at most u32::MAX parts");
    let header_length = FIXED_HEADER_LENGTH + size_of::<u64>() * parts.len();
    let mut header = BytesMut::with_capacity(header_length);
    header.put_slice(&MAGIC);
    header.put_u32_le(count);
    for part in &parts {
        header.put_u64_le(part.len() as u64);
    }

    let mut chunks = Vec::with_capacity(1 + 2 * parts.len());
    chunks.push(header.freeze());
    let mut cursor = header_length;
    for part in parts {
        let padding = padding_before(cursor);
        if padding > 0 {
            chunks.push(Bytes::from_static(&PADDING[..padding]));
        }
        cursor += padding + part.len();
        if !part.is_empty() {
            chunks.push(part);
        }
    }
    Payload::from_chunks(chunks)
}

/// Splits a framed object back into its parts, as zero-copy slices of `object`.
pub fn decode(object: &Bytes) -> Result<Vec<Bytes>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { message };
    let object_length = object.len();
    if object_length < FIXED_HEADER_LENGTH {
        return Err(corrupt(format!(
            "a frame starts with an {FIXED_HEADER_LENGTH}-byte header, but the object is only \
             {object_length} bytes"
        )));
    }
    if object[..MAGIC.len()] != MAGIC {
        return Err(corrupt(format!(
            "the object does not start with the frame magic {:?} (found {:?})",
            String::from_utf8_lossy(&MAGIC),
            String::from_utf8_lossy(&object[..MAGIC.len()]),
        )));
    }
    let count = read_u32(object, MAGIC.len());
    let header_length = (count as usize)
        .checked_mul(size_of::<u64>())
        .and_then(|lengths| lengths.checked_add(FIXED_HEADER_LENGTH))
        .filter(|header_length| *header_length <= object_length)
        .ok_or_else(|| {
            corrupt(format!(
                "the frame announces {count} parts, more lengths than the {object_length}-byte \
                 object holds"
            ))
        })?;

    let mut parts = Vec::with_capacity(count as usize);
    let mut cursor = header_length;
    for index in 0..count as usize {
        let length = read_u64(object, FIXED_HEADER_LENGTH + index * size_of::<u64>());
        let start = cursor + padding_before(cursor);
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| start.checked_add(length))
            .filter(|end| *end <= object_length)
            .ok_or_else(|| {
                corrupt(format!(
                    "part {index} of {count} claims {length} bytes at offset {start}, past the \
                     end of the {object_length}-byte object"
                ))
            })?;
        parts.push(object.slice(start..end));
        cursor = end;
    }
    if cursor != object_length {
        return Err(corrupt(format!(
            "the frame's {count} parts end at offset {cursor}, but the object has \
             {object_length} bytes"
        )));
    }
    Ok(parts)
}

/// The number of zero bytes that move `cursor` to the next multiple of [`ALIGNMENT`].
fn padding_before(cursor: usize) -> usize {
    (ALIGNMENT - cursor % ALIGNMENT) % ALIGNMENT
}

fn read_u32(object: &[u8], offset: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&object[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(object: &[u8], offset: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&object[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Up to eight parts of up to 300 bytes, including empty ones.
    fn parts_strategy() -> impl Strategy<Value = Vec<Bytes>> {
        prop::collection::vec(
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from),
            0..8,
        )
    }

    fn offset_in(object: &Bytes, part: &Bytes) -> usize {
        part.as_ptr() as usize - object.as_ptr() as usize
    }

    fn corrupt_message(result: Result<Vec<Bytes>, StoreError>) -> String {
        match result {
            Err(StoreError::Corrupt { message }) => message,
            other => panic!("expected a corrupt-frame error, got {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn decode_inverts_encode_with_aligned_zero_copy_parts(parts in parts_strategy()) {
            let object = encode(parts.clone()).into_contiguous();
            let decoded = decode(&object).unwrap();
            prop_assert_eq!(&decoded, &parts);
            for part in decoded.iter().filter(|part| !part.is_empty()) {
                let offset = offset_in(&object, part);
                prop_assert_eq!(offset % ALIGNMENT, 0);
                prop_assert!(offset + part.len() <= object.len());
            }
        }

        #[test]
        fn encode_does_not_copy_parts(parts in parts_strategy()) {
            let payload = encode(parts.clone());
            let pointers: Vec<*const u8> =
                payload.chunks().iter().map(|chunk| chunk.as_ptr()).collect();
            for part in parts.iter().filter(|part| !part.is_empty()) {
                prop_assert!(pointers.contains(&part.as_ptr()));
            }
        }

        #[test]
        fn every_truncation_or_extension_is_rejected(
            parts in parts_strategy(),
            cut in any::<prop::sample::Index>(),
            extra in 1usize..100,
        ) {
            let object = encode(parts).into_contiguous();
            let truncated = object.slice(..cut.index(object.len()));
            prop_assert!(decode(&truncated).is_err());
            let mut extended = object.to_vec();
            extended.resize(object.len() + extra, 0);
            prop_assert!(decode(&Bytes::from(extended)).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&Bytes::from(data.clone()));
            if data.len() >= 4 {
                data[..4].copy_from_slice(&MAGIC);
                let _ = decode(&Bytes::from(data));
            }
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let object = encode(vec![
            Bytes::from_static(b"pickle"),
            Bytes::from_static(b"xy"),
        ])
        .into_contiguous();
        assert_eq!(&object[..4], b"DSF1");
        assert_eq!(read_u32(&object, 4), 2);
        assert_eq!(read_u64(&object, 8), 6);
        assert_eq!(read_u64(&object, 16), 2);
        assert!(object[24..64].iter().all(|byte| *byte == 0));
        assert_eq!(&object[64..70], b"pickle");
        assert!(object[70..128].iter().all(|byte| *byte == 0));
        assert_eq!(&object[128..130], b"xy");
        assert_eq!(object.len(), 130);

        let empty = encode(Vec::new()).into_contiguous();
        assert_eq!(&empty[..], b"DSF1\0\0\0\0");
        assert!(decode(&empty).unwrap().is_empty());
    }

    #[test]
    fn corrupt_input_is_explained() {
        assert!(corrupt_message(decode(&Bytes::from_static(b"DSF"))).contains("header"));
        assert!(
            corrupt_message(decode(&Bytes::from_static(b"PK\x03\x04\0\0\0\0"))).contains("magic")
        );
        let huge_count = Bytes::from_static(b"DSF1\xff\xff\xff\xff");
        assert!(corrupt_message(decode(&huge_count)).contains("4294967295 parts"));
        let mut huge_length = b"DSF1\x01\0\0\0".to_vec();
        huge_length.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(corrupt_message(decode(&Bytes::from(huge_length))).contains("past the end"));
    }
}
