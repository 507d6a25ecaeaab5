//! The conformance suite: what every [`Store`] backend must do, as runnable checks.
//!
//! Each public function exercises one part of the contract against a store and panics with an
//! explanation when the store breaks it; [`run_all`] runs them all. A backend's tests call them
//! on a fresh store (one test per function gives precise failure reports).
//!
//! Each check works under its own prefix, `conformance/<check name>/`, deletes that prefix
//! before starting (a leftover of an interrupted run) and when done, and touches nothing
//! else, so the checks can share one store — even a long-lived server — one after the other.
//! They do not assume that the rest of the store is empty.

use bytes::Bytes;
use futures::future::join_all;

use crate::{Payload, Store, StoreError, StoreExt, frame};

/// Runs every check of the suite, one after the other.
pub async fn run_all(store: &dyn Store) {
    put_get_delete_round_trip(store).await;
    put_overwrites(store).await;
    empty_object_round_trips(store).await;
    chunks_are_concatenated(store).await;
    large_object_round_trips(store).await;
    get_of_missing_key_names_the_key(store).await;
    invalid_keys_are_rejected(store).await;
    delete_of_absent_key_succeeds(store).await;
    delete_prefix_removes_exactly_the_prefix(store).await;
    list_returns_the_keys_under_a_prefix(store).await;
    key_can_also_be_a_folder(store).await;
    read_bytes_outlive_overwrite_and_delete(store).await;
    concurrent_writers_never_mix(store).await;
    put_new_writes_only_if_absent(store).await;
    put_new_has_one_winner_among_concurrent_writers(store).await;
    fan_in_ignores_repeated_members(store).await;
    fan_in_releases_once_among_concurrent_members(store).await;
    fan_in_releases_once_despite_concurrent_duplicates(store).await;
    fan_in_of_one_releases_on_first_add(store).await;
    fan_in_sets_are_independent(store).await;
    fan_in_rejects_invalid_calls(store).await;
    cleanup_removes_objects_and_fan_in_sets(store).await;
    framed_parts_round_trip(store).await;
}

/// The prefix a check works under, emptied before use.
async fn fresh_prefix(store: &dyn Store, check: &str) -> String {
    let prefix = format!("conformance/{check}/");
    store
        .delete_prefix(&prefix)
        .await
        .unwrap_or_else(|error| panic!("cannot empty {prefix}: {error}"));
    prefix
}

async fn finish(store: &dyn Store, prefix: &str) {
    store
        .delete_prefix(prefix)
        .await
        .unwrap_or_else(|error| panic!("cannot empty {prefix}: {error}"));
}

async fn get(store: &dyn Store, key: &str) -> Bytes {
    store
        .get(key)
        .await
        .unwrap_or_else(|error| panic!("get({key:?}) failed: {error}"))
}

async fn put(store: &dyn Store, key: &str, payload: impl Into<Payload>) {
    store
        .put(key, payload.into())
        .await
        .unwrap_or_else(|error| panic!("put({key:?}) failed: {error}"));
}

async fn list(store: &dyn Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .await
        .unwrap_or_else(|error| panic!("list({prefix:?}) failed: {error}"))
}

async fn fan_in(store: &dyn Store, key: &str, member: &str, expected: u32) -> bool {
    store
        .fan_in(key, member, expected)
        .await
        .unwrap_or_else(|error| panic!("fan_in({key:?}, {member:?}, {expected}) failed: {error}"))
}

fn assert_not_found(result: Result<Bytes, StoreError>, key: &str) {
    match result {
        Err(StoreError::NotFound { key: reported }) => {
            assert_eq!(reported, key, "NotFound must name the key that was read")
        }
        Err(error) => panic!("get({key:?}) of a missing key: expected NotFound, got {error}"),
        Ok(object) => panic!(
            "get({key:?}) of a missing key returned a {}-byte object",
            object.len()
        ),
    }
}

/// Deterministic bytes that differ for every seed and position.
fn pattern(seed: u64, length: usize) -> Bytes {
    let mut state = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    let mut data = Vec::with_capacity(length + 8);
    while data.len() < length {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(length);
    Bytes::from(data)
}

/// An object written is read back whole; once deleted, it is gone.
pub async fn put_get_delete_round_trip(store: &dyn Store) {
    let prefix = fresh_prefix(store, "round-trip").await;
    let key = format!("{prefix}A.b_c=d-0/value");
    put(store, &key, &b"hello, store"[..]).await;
    assert_eq!(get(store, &key).await, &b"hello, store"[..]);
    store.delete(&key).await.expect("delete of a present key");
    assert_not_found(store.get(&key).await, &key);
    finish(store, &prefix).await;
}

/// A put replaces the object stored under the key, whatever the sizes.
pub async fn put_overwrites(store: &dyn Store) {
    let prefix = fresh_prefix(store, "overwrite").await;
    let key = format!("{prefix}value");
    put(store, &key, pattern(1, 10_000)).await;
    put(store, &key, &b"short"[..]).await;
    assert_eq!(get(store, &key).await, &b"short"[..]);
    put(store, &key, pattern(2, 20_000)).await;
    assert_eq!(get(store, &key).await, pattern(2, 20_000));
    assert_eq!(list(store, &prefix).await, vec![key]);
    finish(store, &prefix).await;
}

/// A zero-length object exists and reads back empty.
pub async fn empty_object_round_trips(store: &dyn Store) {
    let prefix = fresh_prefix(store, "empty-object").await;
    let key = format!("{prefix}empty");
    put(store, &key, Payload::new()).await;
    assert!(get(store, &key).await.is_empty());
    put(
        store,
        &key,
        Payload::from_chunks(vec![Bytes::new(), Bytes::new()]),
    )
    .await;
    assert!(get(store, &key).await.is_empty());
    assert_eq!(list(store, &prefix).await, vec![key]);
    finish(store, &prefix).await;
}

/// The chunks of a payload, empty ones included, are stored one after the other.
pub async fn chunks_are_concatenated(store: &dyn Store) {
    let prefix = fresh_prefix(store, "chunks").await;
    let key = format!("{prefix}chunked");
    let chunks = vec![
        Bytes::from_static(b"first "),
        Bytes::new(),
        pattern(3, 1000),
        Bytes::from_static(b" last"),
    ];
    let expected: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.to_vec()).collect();
    put(store, &key, Payload::from_chunks(chunks)).await;
    assert_eq!(get(store, &key).await, expected);
    finish(store, &prefix).await;
}

/// A 64 MiB object written in 16 chunks reads back byte for byte.
pub async fn large_object_round_trips(store: &dyn Store) {
    const CHUNK_LENGTH: usize = 4 << 20;
    const CHUNKS: u64 = 16;
    let prefix = fresh_prefix(store, "large-object").await;
    let key = format!("{prefix}large");
    let chunks: Vec<Bytes> = (0..CHUNKS)
        .map(|seed| pattern(seed, CHUNK_LENGTH))
        .collect();
    put(store, &key, Payload::from_chunks(chunks.clone())).await;
    let object = get(store, &key).await;
    assert_eq!(
        object.len(),
        CHUNK_LENGTH * CHUNKS as usize,
        "large object length"
    );
    for (index, (stored, written)) in object.chunks(CHUNK_LENGTH).zip(&chunks).enumerate() {
        assert!(
            stored == &written[..],
            "chunk {index} of the large object differs"
        );
    }
    finish(store, &prefix).await;
}

/// Reading a missing key is `NotFound` naming that key.
pub async fn get_of_missing_key_names_the_key(store: &dyn Store) {
    let prefix = fresh_prefix(store, "missing-key").await;
    let key = format!("{prefix}never/written");
    assert_not_found(store.get(&key).await, &key);
    assert_eq!(store.get_optional(&key).await.expect("get_optional"), None);
    finish(store, &prefix).await;
}

/// Malformed keys and prefixes are rejected with `InvalidKey` by every operation, with no
/// effect.
pub async fn invalid_keys_are_rejected(store: &dyn Store) {
    let prefix = fresh_prefix(store, "invalid-keys").await;
    let long_segment = "s".repeat(crate::MAX_SEGMENT_LENGTH + 1);
    let long_key = vec!["k".repeat(100); 11].join("/");
    let invalid_keys = [
        String::new(),
        format!("/{prefix}absolute"),
        prefix.clone(),
        format!("{prefix}double//slash"),
        format!("{prefix}./dot"),
        format!("{prefix}../dot-dot"),
        ".".to_owned(),
        "..".to_owned(),
        format!("{prefix}with space"),
        format!("{prefix}at@sign"),
        format!("{prefix}tilde~"),
        format!("{prefix}back\\slash"),
        format!("{prefix}new\nline"),
        format!("{prefix}caf\u{e9}"),
        format!("{prefix}{long_segment}"),
        long_key,
    ];
    for key in &invalid_keys {
        let expect_invalid = |operation: &str, error: Option<StoreError>| match error {
            Some(StoreError::InvalidKey { key: reported, .. }) => {
                assert_eq!(&reported, key, "InvalidKey must name the rejected key")
            }
            Some(error) => panic!("{operation}({key:?}): expected InvalidKey, got {error}"),
            None => panic!("{operation}({key:?}) accepted an invalid key"),
        };
        expect_invalid("put", store.put(key, Payload::from("x")).await.err());
        expect_invalid(
            "put_new",
            store.put_new(key, Payload::from("x")).await.err(),
        );
        expect_invalid("get", store.get(key).await.err());
        expect_invalid("delete", store.delete(key).await.err());
        expect_invalid("fan_in", store.fan_in(key, "member", 1).await.err());
    }
    let invalid_prefixes = [
        format!("{prefix}no-slash"),
        "/".to_owned(),
        format!("{prefix}double//"),
        format!("{prefix}with space/"),
        format!("/{prefix}"),
    ];
    for invalid_prefix in &invalid_prefixes {
        assert!(
            matches!(
                store.delete_prefix(invalid_prefix).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "delete_prefix({invalid_prefix:?}) must be rejected with InvalidKey"
        );
        assert!(
            matches!(
                store.list(invalid_prefix).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "list({invalid_prefix:?}) must be rejected with InvalidKey"
        );
    }
    assert!(
        matches!(
            store.delete_prefix("").await,
            Err(StoreError::InvalidKey { .. })
        ),
        "delete_prefix(\"\") must be rejected: it would empty the whole store"
    );
    store
        .list("")
        .await
        .expect("list(\"\") lists the whole store");
    assert!(
        list(store, &prefix).await.is_empty(),
        "rejected puts must not create objects"
    );
    finish(store, &prefix).await;
}

/// Deleting a key that holds nothing succeeds, twice in a row too.
pub async fn delete_of_absent_key_succeeds(store: &dyn Store) {
    let prefix = fresh_prefix(store, "delete-absent").await;
    let key = format!("{prefix}never/written");
    store.delete(&key).await.expect("delete of an absent key");
    put(store, &key, &b"x"[..]).await;
    store.delete(&key).await.expect("delete of a present key");
    store
        .delete(&key)
        .await
        .expect("second delete of the same key");
    finish(store, &prefix).await;
}

/// `delete_prefix` removes exactly the objects under the prefix, at any depth, and counts them;
/// sibling prefixes sharing the same leading characters (`run1` and `run10`) are untouched.
pub async fn delete_prefix_removes_exactly_the_prefix(store: &dyn Store) {
    let prefix = fresh_prefix(store, "delete-prefix").await;
    let doomed = [
        format!("{prefix}run1/a"),
        format!("{prefix}run1/b"),
        format!("{prefix}run1/deep/er/c"),
    ];
    let kept = [
        format!("{prefix}run1"),
        format!("{prefix}run10/a"),
        format!("{prefix}run1-other/a"),
        format!("{prefix}run0/a"),
    ];
    for key in doomed.iter().chain(&kept) {
        put(store, key, Bytes::from(key.clone())).await;
    }
    let deleted = store
        .delete_prefix(&format!("{prefix}run1/"))
        .await
        .expect("delete_prefix");
    assert_eq!(deleted, doomed.len() as u64, "delete_prefix count");
    for key in &doomed {
        assert_not_found(store.get(key).await, key);
    }
    for key in &kept {
        assert_eq!(get(store, key).await, key.as_bytes(), "{key} must survive");
    }
    let mut remaining = kept.to_vec();
    remaining.sort();
    assert_eq!(list(store, &prefix).await, remaining);
    let again = store
        .delete_prefix(&format!("{prefix}run1/"))
        .await
        .expect("delete_prefix of an empty prefix");
    assert_eq!(again, 0, "an empty prefix holds no objects");
    finish(store, &prefix).await;
}

/// `list` returns every key under the prefix, at any depth, sorted, and nothing else.
pub async fn list_returns_the_keys_under_a_prefix(store: &dyn Store) {
    let prefix = fresh_prefix(store, "list").await;
    let mut keys = vec![
        format!("{prefix}run1/b"),
        format!("{prefix}run1/a"),
        format!("{prefix}run1/nested/c"),
        format!("{prefix}run10/d"),
        format!("{prefix}top"),
    ];
    for key in &keys {
        put(store, key, &b"x"[..]).await;
    }
    keys.sort();
    assert_eq!(list(store, &prefix).await, keys);
    assert_eq!(
        list(store, &format!("{prefix}run1/")).await,
        vec![
            format!("{prefix}run1/a"),
            format!("{prefix}run1/b"),
            format!("{prefix}run1/nested/c"),
        ]
    );
    assert!(list(store, &format!("{prefix}absent/")).await.is_empty());
    assert!(
        list(store, &format!("{prefix}top/")).await.is_empty(),
        "an object is not a folder of itself"
    );
    let everything = list(store, "").await;
    for key in &keys {
        assert!(everything.contains(key), "list(\"\") must include {key}");
    }
    fan_in(store, &format!("{prefix}run1/set"), "member", 2).await;
    assert_eq!(
        list(store, &format!("{prefix}run1/")).await.len(),
        3,
        "fan-in sets are not objects"
    );
    finish(store, &prefix).await;
}

/// A key can hold an object and be the folder of other keys at the same time.
pub async fn key_can_also_be_a_folder(store: &dyn Store) {
    let prefix = fresh_prefix(store, "key-and-folder").await;
    let leaf = format!("{prefix}a");
    let inner = format!("{prefix}a/b");
    let innermost = format!("{prefix}a/b/c");
    put(store, &innermost, &b"c"[..]).await;
    put(store, &leaf, &b"a"[..]).await;
    put(store, &inner, &b"b"[..]).await;
    assert_eq!(get(store, &leaf).await, &b"a"[..]);
    assert_eq!(get(store, &inner).await, &b"b"[..]);
    assert_eq!(get(store, &innermost).await, &b"c"[..]);
    assert_eq!(
        list(store, &prefix).await,
        vec![leaf.clone(), inner.clone(), innermost.clone()]
    );
    store.delete(&inner).await.expect("delete");
    assert_eq!(get(store, &innermost).await, &b"c"[..]);
    let deleted = store
        .delete_prefix(&format!("{leaf}/"))
        .await
        .expect("delete_prefix");
    assert_eq!(deleted, 1);
    assert_eq!(get(store, &leaf).await, &b"a"[..]);
    finish(store, &prefix).await;
}

/// Bytes already read stay valid and unchanged when the object is replaced or deleted.
pub async fn read_bytes_outlive_overwrite_and_delete(store: &dyn Store) {
    let prefix = fresh_prefix(store, "outlive").await;
    let key = format!("{prefix}value");
    let original = pattern(7, 100_000);
    put(store, &key, original.clone()).await;
    let read = get(store, &key).await;
    put(store, &key, pattern(8, 50_000)).await;
    assert_eq!(read, original, "an overwrite changed bytes already read");
    store.delete(&key).await.expect("delete");
    assert_eq!(read, original, "a delete changed bytes already read");
    finish(store, &prefix).await;
}

/// Many writers replacing one key at once: a reader only ever sees one writer's whole object.
pub async fn concurrent_writers_never_mix(store: &dyn Store) {
    const WRITERS: u64 = 8;
    const ROUNDS: usize = 4;
    const LENGTH: usize = 1 << 20;
    let prefix = fresh_prefix(store, "concurrent-writers").await;
    let key = format!("{prefix}contended");
    let patterns: Vec<Bytes> = (0..WRITERS).map(|seed| pattern(seed, LENGTH)).collect();
    let done = std::sync::atomic::AtomicBool::new(false);

    let writers = async {
        join_all(patterns.iter().map(|object| async {
            for _ in 0..ROUNDS {
                // Several chunks, so that a torn write would be visible.
                let chunks = (0..4)
                    .map(|quarter| object.slice(quarter * LENGTH / 4..(quarter + 1) * LENGTH / 4))
                    .collect();
                put(store, &key, Payload::from_chunks(chunks)).await;
                tokio::task::yield_now().await;
            }
        }))
        .await;
        done.store(true, std::sync::atomic::Ordering::Release);
    };
    let reader = async {
        let mut complete_reads = 0;
        loop {
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            match store.get(&key).await {
                Ok(object) => {
                    assert!(
                        patterns.contains(&object),
                        "a reader saw a {}-byte object that is no writer's whole object",
                        object.len()
                    );
                    complete_reads += 1;
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(error) => panic!("get during concurrent writes failed: {error}"),
            }
            if finished && complete_reads > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    futures::join!(writers, reader);
    finish(store, &prefix).await;
}

async fn put_new(store: &dyn Store, key: &str, payload: impl Into<Payload>) -> bool {
    store
        .put_new(key, payload.into())
        .await
        .unwrap_or_else(|error| panic!("put_new({key:?}) failed: {error}"))
}

/// `put_new` writes only where no object is, says whether it wrote, and never changes an
/// object that is there; a fan-in set of the same key does not count as an object.
pub async fn put_new_writes_only_if_absent(store: &dyn Store) {
    let prefix = fresh_prefix(store, "put-new").await;
    let key = format!("{prefix}claim");
    assert!(
        put_new(store, &key, "first").await,
        "put_new of an absent key must write"
    );
    assert_eq!(get(store, &key).await, Bytes::from("first"));
    assert!(
        !put_new(store, &key, "second").await,
        "put_new of a present key must answer false"
    );
    assert_eq!(
        get(store, &key).await,
        Bytes::from("first"),
        "put_new must not change an object that is there"
    );
    put(store, &key, "replaced").await;
    assert!(!put_new(store, &key, "third").await);
    assert_eq!(get(store, &key).await, Bytes::from("replaced"));
    store.delete(&key).await.expect("delete");
    assert!(
        put_new(
            store,
            &key,
            Payload::from_chunks(vec![Bytes::from("a"), Bytes::from("b")])
        )
        .await,
        "put_new after a delete must write"
    );
    assert_eq!(get(store, &key).await, Bytes::from("ab"));
    let set = format!("{prefix}set");
    fan_in(store, &set, "member", 2).await;
    assert!(
        put_new(store, &set, "object").await,
        "a fan-in set is not an object: put_new of its key must write"
    );
    let empty = format!("{prefix}empty");
    assert!(put_new(store, &empty, Bytes::new()).await);
    assert!(!put_new(store, &empty, "late").await);
    assert!(get(store, &empty).await.is_empty());
    assert_eq!(
        list(store, &prefix).await,
        vec![key.clone(), empty.clone(), set.clone()],
        "put_new must leave no temporary object behind"
    );
    finish(store, &prefix).await;
}

/// Of many concurrent `put_new` of one absent key, exactly one wins, and the object is the
/// winner's — for one key and for many keys at once.
pub async fn put_new_has_one_winner_among_concurrent_writers(store: &dyn Store) {
    const WRITERS: u64 = 8;
    const KEYS: usize = 12;
    let prefix = fresh_prefix(store, "put-new-concurrent").await;
    let attempts: Vec<(String, u64)> = (0..KEYS)
        .flat_map(|index| (0..WRITERS).map(move |writer| (index, writer)))
        .map(|(index, writer)| (format!("{prefix}claim-{index}"), writer))
        .collect();
    let outcomes = join_all(attempts.iter().map(|(key, writer)| async move {
        let payload = pattern(*writer, 64 + *writer as usize);
        (key, *writer, put_new(store, key, payload).await)
    }))
    .await;
    for index in 0..KEYS {
        let key = format!("{prefix}claim-{index}");
        let winners: Vec<u64> = outcomes
            .iter()
            .filter(|(name, _, won)| **name == key && *won)
            .map(|(_, writer, _)| *writer)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{key}: {} concurrent put_new answered true (writers {winners:?}); exactly one must",
            winners.len()
        );
        assert_eq!(
            get(store, &key).await,
            pattern(winners[0], 64 + winners[0] as usize),
            "{key}: the object must be the winner's"
        );
    }
    assert_eq!(list(store, &prefix).await.len(), KEYS);
    finish(store, &prefix).await;
}

/// Re-adding a member never counts twice and never releases.
pub async fn fan_in_ignores_repeated_members(store: &dyn Store) {
    let prefix = fresh_prefix(store, "fan-in-repeat").await;
    let key = format!("{prefix}child");
    assert!(!fan_in(store, &key, "parent-a", 2).await);
    assert!(
        !fan_in(store, &key, "parent-a", 2).await,
        "a repeated member must not complete the set"
    );
    assert!(
        fan_in(store, &key, "parent-b", 2).await,
        "the completing add releases"
    );
    assert!(
        !fan_in(store, &key, "parent-b", 2).await,
        "a repeated completing add releases again"
    );
    assert!(!fan_in(store, &key, "parent-a", 2).await);
    finish(store, &prefix).await;
}

/// Adds every `(key, member)` delivery concurrently and asserts that each key's set released
/// exactly once.
async fn assert_each_set_releases_once(
    store: &dyn Store,
    deliveries: &[(String, String)],
    expected: u32,
) {
    let releases = join_all(
        deliveries
            .iter()
            .map(|(key, member)| fan_in(store, key, member, expected)),
    )
    .await;
    let mut releases_per_key = std::collections::BTreeMap::<&str, usize>::new();
    for ((key, _), released) in deliveries.iter().zip(releases) {
        *releases_per_key.entry(key).or_default() += usize::from(released);
    }
    for (key, count) in releases_per_key {
        assert_eq!(
            count, 1,
            "{key}: exactly one of the concurrent adds must release the child"
        );
    }
}

/// `sets` fan-in keys under `prefix`, each receiving `members` distinct members `copies` times,
/// the deliveries of one set next to each other so that they overlap.
fn deliveries(prefix: &str, sets: usize, members: u32, copies: u32) -> Vec<(String, String)> {
    (0..sets)
        .flat_map(|set| {
            (0..members * copies).map(move |delivery| {
                (
                    format!("{prefix}child-{set}"),
                    format!("parent-{}", delivery % members),
                )
            })
        })
        .collect()
}

/// With as many concurrent adders of distinct members as expected, exactly one releases — for
/// large sets and for many small ones (where every add races with the completing one).
pub async fn fan_in_releases_once_among_concurrent_members(store: &dyn Store) {
    let prefix = fresh_prefix(store, "fan-in-concurrent").await;
    for (sets, members) in [(4, 32), (64, 2)] {
        let deliveries = deliveries(&format!("{prefix}{members}/"), sets, members, 1);
        assert_each_set_releases_once(store, &deliveries, members).await;
        for (key, member) in &deliveries {
            assert!(
                !fan_in(store, key, member, members).await,
                "{key}: {member} is missing from the set"
            );
        }
    }
    finish(store, &prefix).await;
}

/// Concurrent adds where every member is delivered three times still release exactly once.
pub async fn fan_in_releases_once_despite_concurrent_duplicates(store: &dyn Store) {
    let prefix = fresh_prefix(store, "fan-in-duplicates").await;
    for (sets, members) in [(4, 16), (64, 2)] {
        let deliveries = deliveries(&format!("{prefix}{members}/"), sets, members, 3);
        assert_each_set_releases_once(store, &deliveries, members).await;
    }
    finish(store, &prefix).await;
}

/// A set of one releases on its first add, and never again.
pub async fn fan_in_of_one_releases_on_first_add(store: &dyn Store) {
    let prefix = fresh_prefix(store, "fan-in-one").await;
    let key = format!("{prefix}child");
    assert!(fan_in(store, &key, "only-parent", 1).await);
    assert!(!fan_in(store, &key, "only-parent", 1).await);
    finish(store, &prefix).await;
}

/// Sets under different keys do not share members; fan-in sets and objects do not collide.
pub async fn fan_in_sets_are_independent(store: &dyn Store) {
    let prefix = fresh_prefix(store, "fan-in-independent").await;
    let first = format!("{prefix}first");
    let second = format!("{prefix}first/second");
    assert!(!fan_in(store, &first, "parent", 2).await);
    assert!(fan_in(store, &second, "parent", 1).await);
    assert!(fan_in(store, &first, "other", 2).await);
    put(store, &first, &b"object"[..]).await;
    assert_eq!(get(store, &first).await, &b"object"[..]);
    assert!(!fan_in(store, &first, "other", 2).await);
    finish(store, &prefix).await;
}

/// Invalid fan-in calls are rejected: an expected size of zero, a bad member, and a new member
/// added to a complete set. A rejected call changes nothing.
pub async fn fan_in_rejects_invalid_calls(store: &dyn Store) {
    let prefix = fresh_prefix(store, "fan-in-invalid").await;
    let key = format!("{prefix}child");
    let expect_invalid = |call: &str, result: Result<bool, StoreError>| match result {
        Err(StoreError::InvalidFanIn { key: reported, .. }) => {
            assert_eq!(reported, key, "InvalidFanIn must name the set's key")
        }
        other => panic!("{call}: expected InvalidFanIn, got {other:?}"),
    };
    expect_invalid("expected 0", store.fan_in(&key, "parent", 0).await);
    expect_invalid("empty member", store.fan_in(&key, "", 1).await);
    expect_invalid("member with a newline", store.fan_in(&key, "a\nb", 1).await);
    assert!(!fan_in(store, &key, "parent-a", 2).await);
    assert!(fan_in(store, &key, "parent-b", 2).await);
    expect_invalid(
        "a third member of a set of two",
        store.fan_in(&key, "parent-c", 2).await,
    );
    assert!(!fan_in(store, &key, "parent-a", 2).await);
    finish(store, &prefix).await;
}

/// After `delete_prefix`, no object and no fan-in set of the prefix remains: a set under it
/// starts empty again.
pub async fn cleanup_removes_objects_and_fan_in_sets(store: &dyn Store) {
    let prefix = fresh_prefix(store, "cleanup").await;
    let run = format!("{prefix}run/");
    let objects = [
        format!("{run}input"),
        format!("{run}outputs/0"),
        format!("{run}outputs/1"),
        format!("{run}outputs/deep/2"),
    ];
    for key in &objects {
        put(store, key, pattern(9, 1000)).await;
    }
    let complete = format!("{run}fan-in/complete");
    let partial = format!("{run}fan-in/partial");
    assert!(fan_in(store, &complete, "parent", 1).await);
    assert!(!fan_in(store, &partial, "parent-a", 2).await);

    let deleted = store.delete_prefix(&run).await.expect("delete_prefix");
    assert_eq!(deleted, objects.len() as u64, "delete_prefix count");
    assert!(
        list(store, &run).await.is_empty(),
        "objects left after cleanup"
    );
    for key in &objects {
        assert_not_found(store.get(key).await, key);
    }
    assert!(
        fan_in(store, &complete, "parent", 1).await,
        "a fan-in set survived cleanup (it should start empty)"
    );
    assert!(
        !fan_in(store, &partial, "parent-b", 2).await,
        "a fan-in set survived cleanup (its old member still counts)"
    );
    finish(store, &prefix).await;
    assert!(list(store, &prefix).await.is_empty());
}

/// Framed parts come back equal, and each part starts 64-byte aligned within the object.
pub async fn framed_parts_round_trip(store: &dyn Store) {
    let prefix = fresh_prefix(store, "framed").await;
    let key = format!("{prefix}value");
    let parts = vec![
        Bytes::from_static(b"pickle stream"),
        Bytes::new(),
        pattern(10, 100_000),
        pattern(11, 3),
    ];
    store
        .put_parts(&key, parts.clone())
        .await
        .expect("put_parts");
    assert_eq!(store.get_parts(&key).await.expect("get_parts"), parts);
    let object = get(store, &key).await;
    let decoded = frame::decode(&object).expect("decode");
    for part in decoded.iter().filter(|part| !part.is_empty()) {
        let offset = part.as_ptr() as usize - object.as_ptr() as usize;
        assert_eq!(
            offset % frame::ALIGNMENT,
            0,
            "part at offset {offset} is not aligned"
        );
    }
    put(store, &key, &b"not a frame"[..]).await;
    match store.get_parts(&key).await {
        Err(StoreError::Corrupt { message }) => {
            assert!(
                message.contains(&key),
                "Corrupt must name the key: {message}"
            )
        }
        other => panic!("get_parts of an unframed object: expected Corrupt, got {other:?}"),
    }
    finish(store, &prefix).await;
}
