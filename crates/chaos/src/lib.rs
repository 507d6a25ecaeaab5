//! Fault injection for testing: which faults, how often, and seeded draws that replay.
//!
//! A [`ChaosSpec`] names each fault class with its rate, parsed from a short string such as
//! `kill=0.05,duplicate=0.05,throttle=0.2,straggle=0.01`:
//!
//! | name | what it does | where |
//! | --- | --- | --- |
//! | `kill` | the function process dies (exit status 137) at one [`KillPoint`] | the invocation session |
//! | `straggle` | the function runs `slowdown` times slower (default 10) | the invocation session |
//! | `cold` | the invocation starts after a cold-start delay, exponential with mean `cold_ms` (default 500) | the invocation session |
//! | `duplicate` | an asynchronous invocation is delivered twice: at once, or late | the invoker wrapper |
//! | `throttle` | an invocation is refused (429) in a burst, and retried with backoff | the invoker wrapper |
//! | `store` | a store operation fails transiently (503 SlowDown), and the client retries it | the store wrapper |
//! | `latency` | a store operation takes `latency_ms` longer (default 200) | the store wrapper |
//! | `channel` | a result channel send or receive fails transiently (a 500), and the client retries it | the result channel wrapper |
//!
//! Each rate is the probability of the fault per opportunity: per invocation for `kill`,
//! `straggle` and `cold`; per asynchronous invocation for `duplicate` and `throttle`; per store
//! operation for `store` and `latency`; per try of a send or receive for `channel`.
//!
//! **Replay.** A [`Chaos`] is a spec with a seed. Every decision is a [`Chaos::draw`] from a hash
//! of the seed and a *stable identity* of the opportunity (the run, the batch, the attempt, the
//! point; a store key and its occurrence), never from a generator shared by the order of
//! events: concurrent processes draw the same faults for the same work on every run, so a
//! failing run replays from its seed.
//!
//! **Counting.** Every injected fault is counted in the [`Chaos`]'s [`ChaosCounters`] (shared by
//! its clones) and, when the environment names a file in [`CHAOS_LOG_VARIABLE`], appended to it
//! as one line (`fault detail`): a killed process cannot report its own count, its line is
//! already written.

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The environment variable through which functions receive a spec (`SPEC` or `SPEC;seed=N`)
/// when their run does not carry one.
pub const CHAOS_VARIABLE: &str = "DASK_SERVERLESS_CHAOS";
/// The environment variable naming a file to which every injected fault appends a line.
pub const CHAOS_LOG_VARIABLE: &str = "DASK_SERVERLESS_CHAOS_LOG";

/// A fault class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    Kill,
    Duplicate,
    Throttle,
    Straggle,
    Store,
    Latency,
    Cold,
    Channel,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Duplicate,
        Fault::Throttle,
        Fault::Straggle,
        Fault::Store,
        Fault::Latency,
        Fault::Cold,
        Fault::Channel,
    ];

    /// The fault's name in a spec.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Duplicate => "duplicate",
            Fault::Throttle => "throttle",
            Fault::Straggle => "straggle",
            Fault::Store => "store",
            Fault::Latency => "latency",
            Fault::Cold => "cold",
            Fault::Channel => "channel",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a function is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillPoint {
    /// Before it claims its event.
    BeforeStart,
    /// At the first task boundary of a batch (after a task ran, before the next).
    MidTask,
    /// After storing its outputs (the done mark), before its fan-ins.
    BeforeFanIns,
    /// After a fan-in released a child, before invoking it.
    BeforeInvoke,
    /// While becoming a child: loading a batch after its first.
    BecomingChild,
}

impl KillPoint {
    pub const ALL: [KillPoint; 5] = [
        KillPoint::BeforeStart,
        KillPoint::MidTask,
        KillPoint::BeforeFanIns,
        KillPoint::BeforeInvoke,
        KillPoint::BecomingChild,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KillPoint::BeforeStart => "before-start",
            KillPoint::MidTask => "mid-task",
            KillPoint::BeforeFanIns => "before-fan-ins",
            KillPoint::BeforeInvoke => "before-invoke",
            KillPoint::BecomingChild => "becoming-child",
        }
    }
}

/// The rates of each fault class and their parameters. See the crate documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosSpec {
    pub kill: f64,
    pub duplicate: f64,
    pub throttle: f64,
    pub straggle: f64,
    /// How many times slower a straggler runs.
    pub slowdown: f64,
    pub store: f64,
    pub latency: f64,
    /// The extra time of a store latency spike, in milliseconds.
    pub latency_ms: u64,
    pub cold: f64,
    /// The mean cold-start delay, in milliseconds.
    pub cold_ms: u64,
    /// Absent from specs serialized before the class existed.
    #[serde(default)]
    pub channel: f64,
}

impl Default for ChaosSpec {
    /// No fault at all.
    fn default() -> Self {
        ChaosSpec {
            kill: 0.0,
            duplicate: 0.0,
            throttle: 0.0,
            straggle: 0.0,
            slowdown: 10.0,
            store: 0.0,
            latency: 0.0,
            latency_ms: 200,
            cold: 0.0,
            cold_ms: 500,
            channel: 0.0,
        }
    }
}

/// A spec that does not parse; the message is one line saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chaos spec '{spec}': {reason}")]
pub struct ChaosSpecError {
    pub spec: String,
    pub reason: String,
}

const NAMES: &str = "kill, duplicate, throttle, straggle, store, latency, cold, channel (rates from 0 to 1), \
                     slowdown, latency_ms, cold_ms";

impl FromStr for ChaosSpec {
    type Err = ChaosSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| ChaosSpecError {
            spec: text.to_owned(),
            reason,
        };
        let mut spec = ChaosSpec::default();
        let mut seen = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let Some((name, value)) = item.split_once('=') else {
                return Err(error(format!(
                    "'{item}' is not name=value (names: {NAMES})"
                )));
            };
            let (name, value) = (name.trim(), value.trim());
            if seen.contains(&name) {
                return Err(error(format!("'{name}' is given twice")));
            }
            seen.push(name);
            let number = value
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite())
                .ok_or_else(|| {
                    error(format!("the value of '{name}' is not a number: '{value}'"))
                })?;
            let rate = || {
                if (0.0..=1.0).contains(&number) {
                    Ok(number)
                } else {
                    Err(error(format!(
                        "the rate of '{name}' must be between 0 and 1, not {value}"
                    )))
                }
            };
            let milliseconds = || {
                if number >= 0.0 && number.fract() == 0.0 && number <= 600_000.0 {
                    Ok(number as u64)
                } else {
                    Err(error(format!(
                        "'{name}' is a whole number of milliseconds up to 600000, not {value}"
                    )))
                }
            };
            match name {
                "kill" => spec.kill = rate()?,
                "duplicate" => spec.duplicate = rate()?,
                "throttle" => spec.throttle = rate()?,
                "straggle" => spec.straggle = rate()?,
                "store" => spec.store = rate()?,
                "latency" => spec.latency = rate()?,
                "cold" => spec.cold = rate()?,
                "channel" => spec.channel = rate()?,
                "slowdown" if (1.0..=1000.0).contains(&number) => spec.slowdown = number,
                "slowdown" => {
                    return Err(error(format!(
                        "'slowdown' must be between 1 and 1000, not {value}"
                    )));
                }
                "latency_ms" => spec.latency_ms = milliseconds()?,
                "cold_ms" => spec.cold_ms = milliseconds()?,
                other => {
                    return Err(error(format!("unknown name '{other}' (names: {NAMES})")));
                }
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for ChaosSpec {
    /// The spec as it parses back: its rates that are not zero, and parameters not at their
    /// default.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = ChaosSpec::default();
        let mut items = Vec::new();
        for (name, rate) in [
            ("kill", self.kill),
            ("duplicate", self.duplicate),
            ("throttle", self.throttle),
            ("straggle", self.straggle),
            ("store", self.store),
            ("latency", self.latency),
            ("cold", self.cold),
            ("channel", self.channel),
        ] {
            if rate > 0.0 {
                items.push(format!("{name}={rate}"));
            }
        }
        if self.slowdown != default.slowdown {
            items.push(format!("slowdown={}", self.slowdown));
        }
        if self.latency_ms != default.latency_ms {
            items.push(format!("latency_ms={}", self.latency_ms));
        }
        if self.cold_ms != default.cold_ms {
            items.push(format!("cold_ms={}", self.cold_ms));
        }
        formatter.write_str(&items.join(","))
    }
}

/// How many faults of each class were injected.
#[derive(Debug, Default)]
pub struct ChaosCounters {
    counts: [AtomicU64; 8],
}

impl ChaosCounters {
    pub fn get(&self, fault: Fault) -> u64 {
        self.counts[fault.index()].load(Ordering::Relaxed)
    }

    /// Every class with its count, in the order of [`Fault::ALL`].
    pub fn all(&self) -> Vec<(Fault, u64)> {
        Fault::ALL
            .iter()
            .map(|&fault| (fault, self.get(fault)))
            .collect()
    }
}

/// A spec with its seed: the decisions of fault injection.
#[derive(Debug, Clone)]
pub struct Chaos {
    spec: ChaosSpec,
    seed: u64,
    counters: Arc<ChaosCounters>,
}

impl Chaos {
    pub fn new(spec: ChaosSpec, seed: u64) -> Chaos {
        Chaos {
            spec,
            seed,
            counters: Arc::default(),
        }
    }

    /// Parses `SPEC` or `SPEC;seed=N` (the form of [`CHAOS_VARIABLE`] and of a run's setting);
    /// without a seed, the seed is 0.
    pub fn parse(setting: &str) -> Result<Chaos, ChaosSpecError> {
        let (spec, seed) = match setting.rsplit_once(';') {
            Some((spec, seed)) => {
                let value = seed.trim().strip_prefix("seed=").unwrap_or(seed.trim());
                let seed = value.parse::<u64>().map_err(|_| ChaosSpecError {
                    spec: setting.to_owned(),
                    reason: format!("the seed must be a whole number, not '{value}'"),
                })?;
                (spec, seed)
            }
            None => (setting, 0),
        };
        Ok(Chaos::new(spec.parse()?, seed))
    }

    /// The chaos of the function's environment ([`CHAOS_VARIABLE`]), if set and valid; an
    /// invalid setting is said on standard error and ignored.
    pub fn from_environment() -> Option<Chaos> {
        let setting = std::env::var(CHAOS_VARIABLE).ok()?;
        match Chaos::parse(&setting) {
            Ok(chaos) => Some(chaos),
            Err(error) => {
                eprintln!("dask-serverless: {CHAOS_VARIABLE} ignored: {error}");
                None
            }
        }
    }

    /// The same faults for another party: the seed mixed with `scope` (an invocation's batch
    /// and attempt, say), the counters shared. Wrappers whose draws name the work they see
    /// (a store key) are scoped per party, so that a recovery does not meet exactly the faults
    /// that defeated the attempt before it.
    pub fn scoped(&self, scope: &str) -> Chaos {
        let seed = (self.draw(&["scope", scope]) * (1u64 << 53) as f64) as u64;
        Chaos {
            spec: self.spec.clone(),
            seed,
            counters: Arc::clone(&self.counters),
        }
    }

    /// The form [`Chaos::parse`] reads.
    pub fn setting(&self) -> String {
        format!("{};seed={}", self.spec, self.seed)
    }

    pub fn spec(&self) -> &ChaosSpec {
        &self.spec
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn counters(&self) -> &ChaosCounters {
        &self.counters
    }

    /// A uniform draw in `[0, 1)`, a function of the seed and `identity` alone.
    pub fn draw(&self, identity: &[&str]) -> f64 {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        let mut absorb = |bytes: &[u8]| {
            for &byte in bytes {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        absorb(&self.seed.to_le_bytes());
        for part in identity {
            absorb(&(part.len() as u64).to_le_bytes());
            absorb(part.as_bytes());
        }
        // SplitMix64's finalizer spreads FNV's low-entropy high bits.
        let mut mixed = hash;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        (mixed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a fault of probability `rate` happens at `identity`.
    pub fn happens(&self, rate: f64, identity: &[&str]) -> bool {
        rate > 0.0 && self.draw(identity) < rate
    }

    /// Counts an injected fault and appends it to the fault log, if any.
    pub fn record(&self, fault: Fault, detail: &str) {
        self.counters.counts[fault.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(path) = std::env::var_os(CHAOS_LOG_VARIABLE) {
            let line = format!("{} {detail}\n", fault.name());
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()));
            if let Err(error) = appended {
                eprintln!("dask-serverless: could not log an injected fault: {error}");
            }
        }
    }

    /// Where the invocation `identity` (run, batch, attempt) is killed, if it is.
    pub fn kill_point(&self, identity: &[&str]) -> Option<KillPoint> {
        let mut whether = identity.to_vec();
        whether.push("kill");
        if !self.happens(self.spec.kill, &whether) {
            return None;
        }
        whether.push("point");
        let index = (self.draw(&whether) * KillPoint::ALL.len() as f64) as usize;
        KillPoint::ALL.get(index).copied()
    }

    /// The straggler factor of the invocation `identity`: 1 for most, `slowdown` for
    /// stragglers.
    pub fn slowdown(&self, identity: &[&str]) -> f64 {
        let mut whether = identity.to_vec();
        whether.push("straggle");
        if self.happens(self.spec.straggle, &whether) {
            self.spec.slowdown
        } else {
            1.0
        }
    }

    /// The cold-start delay of the invocation `identity`, in milliseconds (0 for most).
    pub fn cold_start_ms(&self, identity: &[&str]) -> u64 {
        let mut whether = identity.to_vec();
        whether.push("cold");
        if !self.happens(self.spec.cold, &whether) {
            return 0;
        }
        whether.push("delay");
        let uniform = self.draw(&whether);
        (-(1.0 - uniform).ln() * self.spec.cold_ms as f64).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_parses_and_prints_back() {
        let spec: ChaosSpec = "kill=0.05,duplicate=0.05,throttle=0.2,straggle=0.01"
            .parse()
            .unwrap();
        assert_eq!(spec.kill, 0.05);
        assert_eq!(spec.throttle, 0.2);
        assert_eq!(spec.slowdown, 10.0);
        assert_eq!(spec.store, 0.0);
        assert_eq!(
            spec.to_string(),
            "kill=0.05,duplicate=0.05,throttle=0.2,straggle=0.01"
        );
        let full: ChaosSpec =
            " store=0.1, latency=0.2,latency_ms=50,cold=1,cold_ms=30,slowdown=3,channel=0.3 "
                .parse()
                .unwrap();
        assert_eq!(full.to_string().parse::<ChaosSpec>().unwrap(), full);
        assert_eq!("".parse::<ChaosSpec>().unwrap(), ChaosSpec::default());
    }

    #[test]
    fn bad_specs_say_what_is_wrong_in_one_line() {
        let cases = [
            (
                "kill=2",
                "the rate of 'kill' must be between 0 and 1, not 2",
            ),
            ("kill", "'kill' is not name=value"),
            ("kill=x", "the value of 'kill' is not a number: 'x'"),
            ("kill=0.1,kill=0.2", "'kill' is given twice"),
            ("explode=0.1", "unknown name 'explode'"),
            ("slowdown=0.5", "'slowdown' must be between 1 and 1000"),
            ("cold_ms=1.5", "'cold_ms' is a whole number of milliseconds"),
            ("kill=nan", "the value of 'kill' is not a number"),
        ];
        for (text, expected) in cases {
            let message = text.parse::<ChaosSpec>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(message.starts_with(&format!("invalid chaos spec '{text}'")));
            assert!(!message.contains('\n'), "{message}");
        }
        let message = Chaos::parse("kill=0.1;seed=x").unwrap_err().to_string();
        assert!(
            message.contains("the seed must be a whole number"),
            "{message}"
        );
    }

    #[test]
    fn a_setting_round_trips_with_its_seed() {
        let chaos = Chaos::parse("kill=0.5;seed=42").unwrap();
        assert_eq!(chaos.seed(), 42);
        let again = Chaos::parse(&chaos.setting()).unwrap();
        assert_eq!(again.spec(), chaos.spec());
        assert_eq!(again.seed(), 42);
        assert_eq!(Chaos::parse("kill=0.5").unwrap().seed(), 0);
    }

    #[test]
    fn draws_depend_on_seed_and_identity_only_and_are_uniform() {
        let chaos = Chaos::parse("kill=0.5;seed=7").unwrap();
        let same = Chaos::parse("kill=0.5;seed=7").unwrap();
        let other = Chaos::parse("kill=0.5;seed=8").unwrap();
        assert_eq!(
            chaos.draw(&["run-1", "3", "1"]),
            same.draw(&["run-1", "3", "1"])
        );
        assert_ne!(
            chaos.draw(&["run-1", "3", "1"]),
            other.draw(&["run-1", "3", "1"])
        );
        // Parts are length-prefixed: moving a boundary changes the identity.
        assert_ne!(chaos.draw(&["ab", "c"]), chaos.draw(&["a", "bc"]));
        let draws: Vec<f64> = (0..10_000)
            .map(|index| chaos.draw(&["batch", &index.to_string()]))
            .collect();
        assert!(draws.iter().all(|draw| (0.0..1.0).contains(draw)));
        let below_tenth = draws.iter().filter(|&&draw| draw < 0.1).count();
        assert!(
            (800..1200).contains(&below_tenth),
            "{below_tenth} of 10000 below 0.1"
        );
    }

    #[test]
    fn kill_points_straggle_and_cold_follow_their_rates() {
        let chaos = Chaos::parse("kill=0.2,straggle=0.1,cold=0.5,cold_ms=100;seed=3").unwrap();
        let identities: Vec<String> = (0..5_000).map(|batch| batch.to_string()).collect();
        let kills: Vec<KillPoint> = identities
            .iter()
            .filter_map(|batch| chaos.kill_point(&["run", batch, "1"]))
            .collect();
        assert!((800..1200).contains(&kills.len()), "{} kills", kills.len());
        for point in KillPoint::ALL {
            assert!(kills.contains(&point), "{} never drawn", point.name());
        }
        let stragglers = identities
            .iter()
            .filter(|batch| chaos.slowdown(&["run", batch, "1"]) == 10.0)
            .count();
        assert!((350..650).contains(&stragglers), "{stragglers} stragglers");
        let delays: Vec<u64> = identities
            .iter()
            .map(|batch| chaos.cold_start_ms(&["run", batch, "1"]))
            .filter(|&delay| delay > 0)
            .collect();
        let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        assert!((80.0..120.0).contains(&mean), "mean cold start {mean} ms");
        let none = Chaos::parse("straggle=0.5").unwrap();
        assert_eq!(none.kill_point(&["run", "1", "1"]), None);
    }

    #[test]
    fn a_scope_draws_anew_and_shares_the_counters() {
        let chaos = Chaos::parse("kill=0.5;seed=1").unwrap();
        let first = chaos.scoped("batch 1 attempt 1");
        let second = chaos.scoped("batch 1 attempt 2");
        assert_eq!(
            first.draw(&["a"]),
            chaos.scoped("batch 1 attempt 1").draw(&["a"])
        );
        assert_ne!(first.draw(&["a"]), second.draw(&["a"]));
        second.record(Fault::Store, "test");
        assert_eq!(chaos.counters().get(Fault::Store), 1);
    }

    #[test]
    fn records_count_per_class_across_clones() {
        let chaos = Chaos::parse("kill=1").unwrap();
        let clone = chaos.clone();
        clone.record(Fault::Throttle, "test");
        chaos.record(Fault::Throttle, "test");
        assert_eq!(chaos.counters().get(Fault::Throttle), 2);
        assert_eq!(chaos.counters().get(Fault::Kill), 0);
    }
}
