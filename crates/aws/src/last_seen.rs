//! Last-seen marks: how a cleanup tells a cluster whose client died from one still in use.
//!
//! # Model
//!
//! Every resource of a cluster carries a [`LAST_SEEN_TAG`], the Unix second of its creation
//! (see the `names` module). While a client has the cluster open, it renews the mark on the
//! cluster's function ([`Deployer::mark_seen`]); the Python `LambdaCluster` does so every minute
//! on a background thread, from the end of its deployment until it closes.
//!
//! A cleanup finds resources by tag, with their tags, and [`judge`]s them cluster by cluster:
//! the resources are grouped by their [`CLUSTER_TAG`], and a cluster counts as *seen* at the
//! freshest mark of any of its resources (the function's, renewed; the others', set at their
//! creation, which protect a deployment still under way). A cluster seen less than `older_than`
//! ago is live: it is skipped as a whole ([`SkippedCluster`]). Every other cluster is stale: all
//! its resources are deleted ([`Leftovers`]).
//!
//! # Decisions
//!
//! * **Default `older_than`: 15 minutes** ([`DEFAULT_OLDER_THAN`]), fifteen renewal periods. A
//!   live client that misses a few renewals (a network outage, throttled tagging calls) is not
//!   mistaken for a dead one, and a dead client's cluster becomes deletable within a quarter of
//!   an hour. A client that stops renewing for longer (a laptop asleep) may find its cluster
//!   deleted by someone else's cleanup; its next compute then fails naming the missing resource.
//! * **No mark at all counts as stale.** Only clusters deployed by versions before the marks
//!   have none (every resource gets one at its creation); their clients cannot be told apart
//!   from dead ones, and counting them as live would keep their leftovers forever.
//! * **`older_than` zero deletes every cluster**, even one whose mark lies in the future.
//! * **Clocks**: a mark is written with the client's clock and read with the cleaner's; a mark
//!   in the future counts as seen just now. The tagging search is eventually consistent, so a
//!   renewed mark may show there a little late: the margin of fifteen periods absorbs that too.
//! * **A named cluster follows the same rule.** `cleanup --cluster ID` says which cluster, not
//!   that its client is dead: an id copied from another notebook, or a colleague's, must not
//!   delete a cluster in use. The skip message says how to insist (`--older-than 0`).
//!
//! Durations are written as [`parse_duration`] reads them: `0`, or numbers with a unit, `s`,
//! `m`, `h` or `d` (`90s`, `30m`, `2h`, `1d`, `1h30m`); [`format_duration`] writes them back.
//!
//! [`Deployer::mark_seen`]: crate::Deployer::mark_seen

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::AwsError;
use crate::names::{CLUSTER_TAG, LAST_SEEN_TAG, read_last_seen_mark};
use crate::resource::{DestroyReport, Resource};

/// How long ago a cluster's client must have been seen for a cleanup to delete the cluster,
/// unless told otherwise (see the module documentation).
pub const DEFAULT_OLDER_THAN: Duration = Duration::from_secs(15 * 60);

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Reads a duration: `0`, or one or more numbers each followed by a unit, `s`, `m`, `h` or `d`
/// (`90s`, `30m`, `2h`, `1d`, `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, AwsError> {
    let invalid = || {
        AwsError::InvalidInput(format!(
            "invalid duration '{text}': write a number and a unit (s, m, h or d), such as 30m, \
             2h or 1d, or 0 for no minimum"
        ))
    };
    let text_trimmed = text.trim();
    if text_trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let mut seconds: u64 = 0;
    let mut number = String::new();
    for character in text_trimmed.chars() {
        if character.is_ascii_digit() {
            number.push(character);
            continue;
        }
        let unit = UNITS
            .iter()
            .find(|(name, _)| *name == character.to_ascii_lowercase())
            .map(|(_, unit)| *unit)
            .ok_or_else(invalid)?;
        let count: u64 = number.parse().map_err(|_| invalid())?;
        seconds = count
            .checked_mul(unit)
            .and_then(|part| seconds.checked_add(part))
            .ok_or_else(invalid)?;
        number.clear();
    }
    if !number.is_empty() || text_trimmed.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(seconds))
}

/// Writes a duration the way [`parse_duration`] reads it, in whole seconds rounded up:
/// `0`, `40s`, `15m`, `1h30m`, `2d`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    if seconds == 0 {
        return "0".to_string();
    }
    let mut text = String::new();
    for (name, unit) in UNITS {
        if seconds >= unit {
            text.push_str(&format!("{}{name}", seconds / unit));
            seconds %= unit;
        }
    }
    text
}

/// An age as people read it: `40 s`, `12 min`, `5 h`, `3 days`.
fn describe_age(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7_200 => format!("{} min", seconds / 60),
        7_200..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} days", seconds / 86_400),
    }
}

/// A cluster a cleanup left alone because its client was seen recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedCluster {
    /// The cluster's id (its resources' [`CLUSTER_TAG`]).
    pub cluster: String,
    /// How long before the cleanup its client was last seen (zero for a mark in the future).
    pub seen_ago: Duration,
}

impl fmt::Display for SkippedCluster {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "cluster {}: its client was seen {} ago",
            self.cluster,
            describe_age(self.seen_ago)
        )
    }
}

/// What a cleanup found, judged: the resources of stale clusters, to delete, and the live
/// clusters it leaves alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Every resource of the stale clusters, sorted.
    pub to_delete: Vec<Resource>,
    /// The live clusters, by id.
    pub skipped: Vec<SkippedCluster>,
}

/// What a cleanup did: the live clusters it skipped, and what it deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    pub skipped: Vec<SkippedCluster>,
    pub deleted: DestroyReport,
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for skipped in &self.skipped {
            writeln!(formatter, "skipped {skipped}")?;
        }
        write!(formatter, "{}", self.deleted)
    }
}

/// A resource found by its tags, with what they say about its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundResource {
    pub(crate) resource: Resource,
    /// The [`CLUSTER_TAG`], if the resource has one.
    pub(crate) cluster: Option<String>,
    /// The [`LAST_SEEN_TAG`], if the resource has a readable one.
    pub(crate) last_seen: Option<SystemTime>,
}

impl FoundResource {
    /// `resource`, described by its `tags` (key to value).
    pub(crate) fn new(resource: Resource, tags: &HashMap<String, String>) -> Self {
        Self {
            resource,
            cluster: tags.get(CLUSTER_TAG).cloned(),
            last_seen: tags
                .get(LAST_SEEN_TAG)
                .and_then(|value| read_last_seen_mark(value)),
        }
    }
}

/// Whether a cluster last seen at `last_seen` (never, if `None`) is stale at `now`: seen
/// `older_than` ago or earlier. `None` when it is live, else how long ago it was seen.
fn seen_within(
    last_seen: Option<SystemTime>,
    older_than: Duration,
    now: SystemTime,
) -> Option<Duration> {
    let last_seen = last_seen?;
    let seen_ago = now.duration_since(last_seen).unwrap_or(Duration::ZERO);
    (seen_ago < older_than).then_some(seen_ago)
}

/// Sorts `found` into the resources of stale clusters and the live clusters, at `now` (see the
/// module documentation). A resource without a cluster tag is judged alone.
pub(crate) fn judge(found: Vec<FoundResource>, older_than: Duration, now: SystemTime) -> Leftovers {
    let mut clusters: BTreeMap<String, (Vec<Resource>, Option<SystemTime>)> = BTreeMap::new();
    for found in found {
        let key = found
            .cluster
            .unwrap_or_else(|| format!("(untagged {})", found.resource));
        let (resources, freshest) = clusters.entry(key).or_default();
        resources.push(found.resource);
        *freshest = (*freshest).max(found.last_seen);
    }
    let mut leftovers = Leftovers::default();
    for (cluster, (resources, freshest)) in clusters {
        match seen_within(freshest, older_than, now) {
            Some(seen_ago) => leftovers.skipped.push(SkippedCluster { cluster, seen_ago }),
            None => leftovers.to_delete.extend(resources),
        }
    }
    leftovers.to_delete.sort();
    leftovers.to_delete.dedup();
    leftovers
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::names::last_seen_mark;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn durations_read_with_units() {
        for (text, seconds) in [
            ("0", 0),
            ("90s", 90),
            ("30m", 1_800),
            ("2h", 7_200),
            ("1d", 86_400),
            ("1h30m", 5_400),
            ("15M", 900),
            (" 45s ", 45),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_secs(seconds),
                "{text:?}"
            );
        }
    }

    #[test]
    fn durations_without_a_unit_or_with_an_unknown_one_are_refused() {
        for bad in [
            "",
            "15",
            "m",
            "1.5h",
            "-1m",
            "2w",
            "1h30",
            "30 m",
            "99999999999999999999d",
        ] {
            let error = parse_duration(bad).unwrap_err().to_string();
            assert_eq!(
                error,
                format!(
                    "invalid duration '{bad}': write a number and a unit (s, m, h or d), such \
                     as 30m, 2h or 1d, or 0 for no minimum"
                )
            );
        }
    }

    #[test]
    fn durations_write_back_as_they_read() {
        for (seconds, text) in [
            (0, "0"),
            (40, "40s"),
            (900, "15m"),
            (5_400, "1h30m"),
            (90_061, "1d1h1m1s"),
        ] {
            let duration = Duration::from_secs(seconds);
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text).unwrap(), duration);
        }
        assert_eq!(format_duration(Duration::from_millis(1_500)), "2s");
        assert_eq!(format_duration(DEFAULT_OLDER_THAN), "15m");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(describe_age(Duration::from_secs(40)), "40 s");
        assert_eq!(describe_age(Duration::from_secs(119)), "119 s");
        assert_eq!(describe_age(Duration::from_secs(754)), "12 min");
        assert_eq!(describe_age(Duration::from_secs(5 * 3_600 + 59)), "5 h");
        assert_eq!(describe_age(Duration::from_secs(3 * 86_400)), "3 days");
    }

    fn tags(cluster: &str, last_seen: Option<SystemTime>) -> HashMap<String, String> {
        let mut tags = HashMap::from([(CLUSTER_TAG.to_string(), cluster.to_string())]);
        if let Some(last_seen) = last_seen {
            tags.insert(LAST_SEEN_TAG.to_string(), last_seen_mark(last_seen));
        }
        tags
    }

    fn found(resource: Resource, cluster: &str, last_seen: Option<SystemTime>) -> FoundResource {
        FoundResource::new(resource, &tags(cluster, last_seen))
    }

    #[test]
    fn a_cluster_is_stale_from_older_than_on() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let fifteen = 15 * MINUTE;
        let cases = [
            (Some(now), fifteen, Some(Duration::ZERO)),
            (
                Some(now - 40 * Duration::from_secs(1)),
                fifteen,
                Some(Duration::from_secs(40)),
            ),
            (
                Some(now - fifteen + Duration::from_secs(1)),
                fifteen,
                Some(fifteen - Duration::from_secs(1)),
            ),
            (Some(now - fifteen), fifteen, None),
            (Some(now - 3 * fifteen), fifteen, None),
            // Never seen: made before marks existed; counts as stale.
            (None, fifteen, None),
            (None, Duration::MAX, None),
            // A mark in the future (another clock) counts as seen now...
            (Some(now + 5 * MINUTE), fifteen, Some(Duration::ZERO)),
            // ... and zero deletes whatever the mark says.
            (Some(now + 5 * MINUTE), Duration::ZERO, None),
            (Some(now), Duration::ZERO, None),
        ];
        for (last_seen, older_than, expected) in cases {
            assert_eq!(
                seen_within(last_seen, older_than, now),
                expected,
                "last seen {last_seen:?}, older than {older_than:?}"
            );
        }
    }

    #[test]
    fn clusters_are_judged_whole_by_their_freshest_mark() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let found = vec![
            // live: its role is an hour old, but its function was marked 40 s ago.
            found(
                Resource::role("dask-serverless-live"),
                "live",
                Some(now - 60 * MINUTE),
            ),
            found(
                Resource::function("dask-serverless-live"),
                "live",
                Some(now - Duration::from_secs(40)),
            ),
            found(Resource::bucket("dask-serverless-live-1"), "live", None),
            // dead: every mark older than 15 minutes.
            found(
                Resource::function("dask-serverless-dead"),
                "dead",
                Some(now - 16 * MINUTE),
            ),
            found(
                Resource::queue("https://q/dask-serverless-dead"),
                "dead",
                Some(now - 60 * MINUTE),
            ),
            // old: made before marks existed.
            found(
                Resource::queue("https://q/dask-serverless-old"),
                "old",
                None,
            ),
            // deploying: only its role exists yet, created a moment ago.
            found(
                Resource::role("dask-serverless-deploying"),
                "deploying",
                Some(now),
            ),
        ];
        let leftovers = judge(found.clone(), DEFAULT_OLDER_THAN, now);
        assert_eq!(
            leftovers.skipped,
            [
                SkippedCluster {
                    cluster: "deploying".to_string(),
                    seen_ago: Duration::ZERO
                },
                SkippedCluster {
                    cluster: "live".to_string(),
                    seen_ago: Duration::from_secs(40)
                },
            ]
        );
        let mut expected = vec![
            Resource::function("dask-serverless-dead"),
            Resource::queue("https://q/dask-serverless-dead"),
            Resource::queue("https://q/dask-serverless-old"),
        ];
        expected.sort();
        assert_eq!(leftovers.to_delete, expected);
        assert_eq!(
            leftovers.skipped[1].to_string(),
            "cluster live: its client was seen 40 s ago"
        );

        let everything = judge(found, Duration::ZERO, now);
        assert!(everything.skipped.is_empty());
        assert_eq!(everything.to_delete.len(), 7);
    }

    #[test]
    fn a_resource_without_a_cluster_tag_is_judged_alone() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let untagged = FoundResource::new(Resource::bucket("dask-serverless-x-1"), &HashMap::new());
        assert_eq!(untagged.cluster, None);
        assert_eq!(untagged.last_seen, None);
        let unreadable = FoundResource::new(
            Resource::bucket("dask-serverless-y-1"),
            &HashMap::from([
                (CLUSTER_TAG.to_string(), "y".to_string()),
                (LAST_SEEN_TAG.to_string(), "yesterday".to_string()),
            ]),
        );
        assert_eq!(unreadable.last_seen, None);
        let leftovers = judge(
            vec![
                untagged,
                unreadable,
                found(Resource::function("dask-serverless-z"), "z", Some(now)),
            ],
            DEFAULT_OLDER_THAN,
            now,
        );
        assert_eq!(
            leftovers.to_delete,
            [
                Resource::bucket("dask-serverless-x-1"),
                Resource::bucket("dask-serverless-y-1")
            ]
        );
        assert_eq!(leftovers.skipped.len(), 1);
    }
}
