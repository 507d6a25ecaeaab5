//! The one error type of every platform backend.

use std::time::Duration;

/// What went wrong talking to a platform, in backend-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The platform kept refusing for lack of capacity (HTTP 429) until retries ran out.
    #[error("{what} was throttled {attempts} times over {elapsed:?}: {message}")]
    Throttled {
        what: String,
        attempts: u32,
        elapsed: Duration,
        message: String,
    },
    /// A request took longer than allowed.
    #[error("{what} timed out after {waited:?}")]
    Timeout { what: String, waited: Duration },
    /// A payload or message over the platform's limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    /// A function or queue that does not exist.
    #[error("{what} does not exist")]
    NotFound { what: String },
    /// The handler failed: the error type and message its runtime reported.
    #[error("{error_type}: {message}")]
    FunctionError { error_type: String, message: String },
    /// The platform cannot be reached (or is shutting down).
    #[error("could not reach the platform at {endpoint}: {message}")]
    Unavailable { endpoint: String, message: String },
    /// The platform answered something this client does not understand.
    #[error("unexpected answer from the platform: {message}")]
    Protocol { message: String },
}
