//! What the tests of the server backends share: one test per conformance check.

/// Writes one `#[tokio::test]` per conformance check, plus one for `run_all`. Each starts a fresh
/// fixture with `$start` (an async expression giving a value with `store()` and `finish()`),
/// runs the check on its store, then lets the fixture verify what the check left behind.
macro_rules! conformance_tests {
    ($start:expr) => {
        conformance_tests!(@checks $start;
            put_get_delete_round_trip,
            put_overwrites,
            empty_object_round_trips,
            chunks_are_concatenated,
            large_object_round_trips,
            get_of_missing_key_names_the_key,
            invalid_keys_are_rejected,
            delete_of_absent_key_succeeds,
            delete_prefix_removes_exactly_the_prefix,
            list_returns_the_keys_under_a_prefix,
            key_can_also_be_a_folder,
            read_bytes_outlive_overwrite_and_delete,
            concurrent_writers_never_mix,
            put_new_writes_only_if_absent,
            put_new_has_one_winner_among_concurrent_writers,
            fan_in_ignores_repeated_members,
            fan_in_releases_once_among_concurrent_members,
            fan_in_releases_once_despite_concurrent_duplicates,
            fan_in_of_one_releases_on_first_add,
            fan_in_sets_are_independent,
            fan_in_rejects_invalid_calls,
            cleanup_removes_objects_and_fan_in_sets,
            framed_parts_round_trip,
        );
    };
    (@checks $start:expr; $($check:ident),* $(,)?) => {
        mod conformance_suite {
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let fixture = $start.await;
                    dask_serverless_store::conformance::$check(fixture.store()).await;
                    fixture.finish().await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn run_all() {
                let fixture = $start.await;
                dask_serverless_store::conformance::run_all(fixture.store()).await;
                fixture.finish().await;
            }
        }
    };
}
