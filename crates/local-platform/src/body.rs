//! Reading request bodies against a size limit.
//!
//! An oversized body is still read to its end (up to a hard cap) before the local platform answers, so
//! that the client, which is still sending, receives the 413 answer instead of a reset connection,
//! and so that the answer can tell the size that was sent.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

/// Past this many bytes an oversized body is no longer drained.
const DRAIN_CAP: usize = 256 * 1024 * 1024;

#[derive(Debug)]
pub(crate) enum LimitedBody {
    Complete(Bytes),
    /// Over the limit; `size` is the size read (a lower bound past the drain cap).
    TooLarge {
        size: usize,
    },
    /// The connection failed while the body was read.
    Failed(String),
}

pub(crate) async fn read_limited(mut body: Body, limit: usize) -> LimitedBody {
    let mut collected = BytesMut::new();
    let mut size = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return LimitedBody::Failed(error.to_string()),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len();
        if size <= limit {
            collected.extend_from_slice(&data);
        } else {
            collected = BytesMut::new();
            if size > DRAIN_CAP {
                break;
            }
        }
    }
    if size > limit {
        LimitedBody::TooLarge { size }
    } else {
        LimitedBody::Complete(collected.freeze())
    }
}
