//! [`RedisStore`]: objects and fan-in sets on a Redis server, shared by every process that
//! connects to it.
//!
//! # Layout
//!
//! Every Redis key of a store starts with the store's *key prefix* (for example
//! `dask-serverless:cluster-7/`), so several stores share one server without seeing each
//! other. Below it, two namespaces keep objects and fan-in sets apart, as the store's model
//! requires:
//!
//! ```text
//! <key prefix>objects/<key>     a Redis string: the object's bytes
//! <key prefix>fan-in/<key>      a Redis set: the members added so far
//! ```
//!
//! Redis keys are flat, so `a` and `a/b` are simply two unrelated strings.
//!
//! # Atomicity
//!
//! - **`put`** is one `SET` of the whole payload (its chunks are written one after the other
//!   straight into the encoded command, never joined first): Redis executes commands one at a
//!   time, so a reader sees the old object or the new one, never a part. **`put_new`** is the
//!   same `SET` with `NX`, which writes only if the key is free.
//! - **`get`** is one `GET`; the returned bytes are this process's own copy, so they outlive any
//!   later overwrite or delete.
//! - **`fan_in`** is one Lua script, executed atomically by the server: if the member is
//!   already in the set it answers "not released"; if the set already holds the expected number
//!   of members it answers "overflow" without adding anything; otherwise it runs `SADD` and
//!   answers "released" exactly when the set now has `expected` members. Because the script
//!   runs alone, exactly one add — the one that completes the set — is ever told "released",
//!   however many processes add concurrently and however often a member is delivered again.
//! - **`delete_prefix`** walks the server's keys with `SCAN MATCH <namespace><prefix>*` (glob
//!   characters of the key prefix escaped) and removes each batch with `UNLINK`, first the
//!   objects, then the fan-in sets. The count is the sum of what `UNLINK` removed, so it is
//!   exact even when another process deletes concurrently. Objects written under the prefix
//!   while it is being deleted may survive. **`list`** uses the same `SCAN`, removes the
//!   duplicates `SCAN` may return and sorts.
//!
//! `SCAN` visits the whole keyspace of the server's database, so listing and deleting cost time
//! in proportion to every key on the server, not only the prefix's. That keeps writes to a
//! single command and the store exactly as Redis holds it (no index to keep in step); the
//! engine lists and deletes once per computation, so this is cheap at the sizes a Redis used as
//! a fast store holds.
//!
//! # Limits and failures
//!
//! - An object is at most `RedisOptions::max_object_size` bytes (512 MiB by default, the
//!   largest string Redis accepts); a larger put fails with [`StoreError::PayloadTooLarge`]
//!   before anything is sent.
//! - Connections go through a connection manager: one multiplexed connection shared by every
//!   operation (the store is cheap to clone), reconnected after the server restarts. Each
//!   connection attempt gives up after `connection_timeout` and a few quick retries; each
//!   command after `response_timeout`. A server that is down or unreachable gives
//!   [`StoreError::Unavailable`] naming its address within about a second; one that stops
//!   answering gives [`StoreError::Timeout`].
//! - Server conditions map onto the store's errors: out of memory (`OOM`) is
//!   [`StoreError::StorageFull`], a busy server (`BUSY`, `TRYAGAIN`) is
//!   [`StoreError::Throttled`], authentication or a read-only replica is
//!   [`StoreError::Unavailable`] with what to change, and a key of the wrong type (something
//!   else writes under this store's key prefix) is [`StoreError::Corrupt`].

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisWrite, Script, ToRedisArgs};

use crate::key::{fan_in_overflow, validate_fan_in, validate_prefix};
use crate::{Payload, Store, StoreError, validate_key};

/// The namespace of objects, below the key prefix.
const OBJECT_NAMESPACE: &str = "objects/";

/// The namespace of fan-in sets, below the key prefix.
const FAN_IN_NAMESPACE: &str = "fan-in/";

/// Adds a member to a fan-in set. `KEYS[1]`: the set; `ARGV[1]`: the member; `ARGV[2]`: the
/// expected size. Answers 1 when this add completed the set, 0 when it did not (including a
/// repeated member), -1 when the set is already complete and the member is new (nothing added).
const FAN_IN_SCRIPT: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local expected = tonumber(ARGV[2])
local size = redis.call('SCARD', KEYS[1])
if size >= expected then
  return -1
end
redis.call('SADD', KEYS[1], ARGV[1])
if size + 1 == expected then
  return 1
end
return 0
";

/// Settings of a [`RedisStore`]; [`Default`] gives values suited to a server on the same
/// network.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// How long one attempt to open a connection may take.
    pub connection_timeout: Duration,
    /// How long to wait for the answer to one command (a put of a large object included).
    pub response_timeout: Duration,
    /// How many times a lost connection is retried, quickly, before operations fail with
    /// [`StoreError::Unavailable`]. Later operations try again.
    pub reconnection_attempts: usize,
    /// The largest object [`Store::put`] accepts, in bytes.
    pub max_object_size: u64,
    /// How many keys one `SCAN` step asks for when listing or deleting a prefix.
    pub scan_batch_size: usize,
}

impl RedisOptions {
    /// The largest string a Redis server accepts by default (`proto-max-bulk-len`): 512 MiB.
    pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 512 << 20;
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
            reconnection_attempts: 2,
            max_object_size: Self::DEFAULT_MAX_OBJECT_SIZE,
            scan_batch_size: 1000,
        }
    }
}

/// A store on a Redis server. Cloning gives another handle on the same connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    settings: Arc<Settings>,
}

struct Settings {
    /// The server's address, for messages (never the password).
    address: String,
    key_prefix: String,
    options: RedisOptions,
    fan_in_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisStore")
            .field("address", &self.settings.address)
            .field("key_prefix", &self.settings.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://[user:password@]host:port[/database]`) with the
    /// default [`RedisOptions`]; every key of the store starts with `key_prefix` (for example
    /// `dask-serverless:<cluster>/`).
    ///
    /// Fails with [`StoreError::Unavailable`], naming the address, if the server cannot be
    /// reached or does not answer `PING`.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with_options(url, key_prefix, RedisOptions::default()).await
    }

    /// Like [`connect`](Self::connect), with explicit settings.
    pub async fn connect_with_options(
        url: &str,
        key_prefix: &str,
        options: RedisOptions,
    ) -> Result<RedisStore, StoreError> {
        if let Some(character) = key_prefix.chars().find(|character| character.is_control()) {
            return Err(StoreError::InvalidKey {
                key: key_prefix.to_owned(),
                reason: format!(
                    "a Redis key prefix cannot contain control characters such as {character:?}"
                ),
            });
        }
        let client = redis::Client::open(url).map_err(|error| StoreError::Unavailable {
            message: format!(
                "invalid Redis URL ({error}); expected redis://[user:password@]host:port[/database]"
            ),
        })?;
        let address = client.get_connection_info().addr().to_string();
        let configuration = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connection_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnection_attempts)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let settings = Arc::new(Settings {
            address,
            key_prefix: key_prefix.to_owned(),
            options,
            fan_in_script: Script::new(FAN_IN_SCRIPT),
        });
        let connect = ConnectionManager::new_with_config(client, configuration);
        let connection = match tokio::time::timeout(settings.connect_deadline(), connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(settings.error(error, "connect to", "")),
            Err(_) => return Err(settings.unreachable("no answer in time")),
        };
        let store = RedisStore {
            connection,
            settings,
        };
        let mut connection = store.connection.clone();
        store
            .run("connect to", "", async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
            })
            .await?;
        Ok(store)
    }

    /// The prefix of every Redis key of this store.
    pub fn key_prefix(&self) -> &str {
        &self.settings.key_prefix
    }

    /// The server's address (`host:port`), as messages name it.
    pub fn address(&self) -> &str {
        &self.settings.address
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{OBJECT_NAMESPACE}{key}", self.settings.key_prefix)
    }

    fn fan_in_key(&self, key: &str) -> String {
        format!("{}{FAN_IN_NAMESPACE}{key}", self.settings.key_prefix)
    }

    /// Runs one exchange with the server under an overall deadline, mapping its errors.
    async fn run<T>(
        &self,
        operation: &str,
        key: &str,
        exchange: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let deadline = self.settings.operation_deadline();
        match tokio::time::timeout(deadline, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.settings.error(error, operation, key)),
            Err(_) => Err(StoreError::Timeout {
                message: format!(
                    "the Redis server at {} did not complete {operation} {key:?} within {deadline:?}",
                    self.settings.address
                ),
            }),
        }
    }

    /// The Redis keys of `namespace` under `prefix`, sorted, without duplicates.
    async fn scan(&self, namespace: &str, prefix: &str) -> Result<BTreeSet<String>, StoreError> {
        let pattern = format!(
            "{}{}*",
            escape_glob(&self.settings.key_prefix),
            escape_glob(&format!("{namespace}{prefix}"))
        );
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut connection = self.connection.clone();
            let (next, batch) = self
                .run("list", prefix, async {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(self.settings.options.scan_batch_size)
                        .query_async::<(u64, Vec<String>)>(&mut connection)
                        .await
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Unlinks every Redis key of `namespace` under `prefix`; returns how many existed.
    async fn unlink_prefix(&self, namespace: &str, prefix: &str) -> Result<u64, StoreError> {
        let keys: Vec<String> = self.scan(namespace, prefix).await?.into_iter().collect();
        let mut removed = 0;
        for batch in keys.chunks(self.settings.options.scan_batch_size.max(1)) {
            let mut connection = self.connection.clone();
            removed += self
                .run("delete", prefix, async {
                    redis::cmd("UNLINK")
                        .arg(batch)
                        .query_async::<u64>(&mut connection)
                        .await
                })
                .await?;
        }
        Ok(removed)
    }

    /// A key and payload `put` accepts: a valid key, at most `max_object_size` bytes.
    fn check_size(&self, key: &str, payload: &Payload) -> Result<(), StoreError> {
        validate_key(key)?;
        let size = payload.len() as u64;
        let limit = self.settings.options.max_object_size;
        if size > limit {
            return Err(StoreError::PayloadTooLarge {
                key: key.to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }
}

impl Settings {
    /// The longest a connection (with its retries) may take before the server counts as down.
    fn connect_deadline(&self) -> Duration {
        let attempts = u32::try_from(self.options.reconnection_attempts + 1).unwrap_or(u32::MAX);
        self.options.connection_timeout.saturating_mul(attempts) + Duration::from_secs(1)
    }

    /// The longest one operation may take: connecting, then waiting for the answer.
    fn operation_deadline(&self) -> Duration {
        self.connect_deadline() + self.options.response_timeout
    }

    fn unreachable(&self, reason: &str) -> StoreError {
        StoreError::Unavailable {
            message: format!(
                "cannot reach the Redis server at {} ({reason}); start it (for example \
                 `redis-server --port <port>`) or point the store at a running server",
                self.address
            ),
        }
    }

    fn error(&self, error: RedisError, operation: &str, key: &str) -> StoreError {
        let address = &self.address;
        if error.is_timeout() {
            return StoreError::Timeout {
                message: format!(
                    "the Redis server at {address} did not answer {operation} {key:?} within \
                     {:?}: {error}",
                    self.options.response_timeout
                ),
            };
        }
        if error.is_connection_refusal() || error.is_connection_dropped() || error.is_io_error() {
            return self.unreachable(&error.to_string());
        }
        let code = error.code().unwrap_or_default().to_owned();
        match code.as_str() {
            "OOM" => StoreError::StorageFull {
                key: key.to_owned(),
                message: format!(
                    "the Redis server at {address} reached its memory limit (`maxmemory`): {error}; \
                     delete finished computations or give the server more memory"
                ),
            },
            "BUSY" | "TRYAGAIN" => StoreError::Throttled {
                message: format!("the Redis server at {address} is busy: {error}"),
            },
            "LOADING" | "MASTERDOWN" | "READONLY" => StoreError::Unavailable {
                message: format!(
                    "the Redis server at {address} cannot take writes now: {error}; point the \
                     store at a primary that has finished loading"
                ),
            },
            "NOAUTH" | "WRONGPASS" | "NOPERM" => StoreError::Unavailable {
                message: format!(
                    "the Redis server at {address} refused the store's credentials: {error}; put \
                     the right user and password in the URL (redis://user:password@host:port)"
                ),
            },
            "WRONGTYPE" => StoreError::Corrupt {
                message: format!(
                    "Redis key for {key:?} holds a value of another type on {address}: something \
                     else writes under the key prefix {:?}",
                    self.key_prefix
                ),
            },
            _ if matches!(error.kind(), redis::ErrorKind::AuthenticationFailed) => {
                StoreError::Unavailable {
                    message: format!(
                        "the Redis server at {address} refused the store's credentials: {error}"
                    ),
                }
            }
            _ => StoreError::Io {
                key: key.to_owned(),
                source: std::io::Error::other(format!(
                    "Redis server at {address} failed to {operation} the key: {error}"
                )),
            },
        }
    }
}

/// Escapes the characters `SCAN MATCH` reads as a glob.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\' | '^') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// The chunks of a payload as one Redis argument, written into the command without first
/// joining them.
struct PayloadArgument<'payload>(&'payload [Bytes]);

impl ToRedisArgs for PayloadArgument<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        out.reserve_space_for_args([self.0.iter().map(Bytes::len).sum()]);
        let mut writer = out.writer_for_next_arg();
        for chunk in self.0 {
            // Writing into the command's own memory buffer cannot fail.
            writer
                .write_all(chunk)
                .expect("writing into a memory buffer");
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError> {
        self.check_size(key, &payload)?;
        let redis_key = self.object_key(key);
        let mut connection = self.connection.clone();
        self.run("write", key, async move {
            redis::cmd("SET")
                .arg(&redis_key)
                .arg(PayloadArgument(payload.chunks()))
                .query_async::<()>(&mut connection)
                .await
        })
        .await
    }

    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError> {
        self.check_size(key, &payload)?;
        let redis_key = self.object_key(key);
        let mut connection = self.connection.clone();
        // `SET ... NX` answers `OK` when it wrote and nil when the key existed.
        let answer: Option<String> = self
            .run("write", key, async move {
                redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(PayloadArgument(payload.chunks()))
                    .arg("NX")
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(answer.is_some())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        let redis_key = self.object_key(key);
        let mut connection = self.connection.clone();
        let object = self
            .run("read", key, async move {
                redis::cmd("GET")
                    .arg(&redis_key)
                    .query_async::<Option<Bytes>>(&mut connection)
                    .await
            })
            .await?;
        object.ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let redis_key = self.object_key(key);
        let mut connection = self.connection.clone();
        self.run("delete", key, async move {
            redis::cmd("UNLINK")
                .arg(&redis_key)
                .query_async::<u64>(&mut connection)
                .await
        })
        .await?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        validate_prefix(prefix, false)?;
        let objects = self.unlink_prefix(OBJECT_NAMESPACE, prefix).await?;
        self.unlink_prefix(FAN_IN_NAMESPACE, prefix).await?;
        Ok(objects)
    }

    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        validate_fan_in(key, member, expected)?;
        let redis_key = self.fan_in_key(key);
        let mut connection = self.connection.clone();
        let answer = self
            .run("add a fan-in member to", key, async move {
                self.settings
                    .fan_in_script
                    .key(&redis_key)
                    .arg(member)
                    .arg(expected)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await?;
        match answer {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(fan_in_overflow(key, member, expected)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix, true)?;
        let namespace = format!("{}{OBJECT_NAMESPACE}", self.settings.key_prefix);
        Ok(self
            .scan(OBJECT_NAMESPACE, prefix)
            .await?
            .into_iter()
            .filter_map(|redis_key| redis_key.strip_prefix(&namespace).map(str::to_owned))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("plain:prefix/"), "plain:prefix/");
        assert_eq!(escape_glob("a*b?c[d]e\\f^"), "a\\*b\\?c\\[d\\]e\\\\f\\^");
    }
}
