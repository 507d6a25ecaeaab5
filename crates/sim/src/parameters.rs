//! The platform model's parameters: what the simulation assumes about invocations, cold
//! starts, concurrency, CPU, network, the store and the result channel.
//!
//! Every parameter has a name, a unit in its name (`_us`, `_bytes_per_s`, `_per_s`) and, in
//! the named sets, a source: AWS's documentation where it states a figure (concurrency
//! scaling, CPU by memory size, S3's request rates), published measurements where it does not
//! (cold starts, latencies, bandwidth), and our own measurements for the local platform. Where
//! a figure is an assumption, [`PlatformParameters::sources`] says so.
//!
//! Durations that vary are [`Spread`]s: a median and a log-normal spread (the median times
//! `exp(spread * z)` for a standard normal `z`), drawn deterministically from the run's seed
//! and the identity of what is drawn (an invocation, a store operation).

use serde::{Deserialize, Serialize};

/// A duration that varies: `median_us` times `exp(spread * z)`, `z` standard normal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median_us: f64,
    #[serde(default)]
    pub spread: f64,
}

impl Spread {
    pub const fn fixed(median_us: f64) -> Spread {
        Spread {
            median_us,
            spread: 0.0,
        }
    }

    pub const fn new(median_us: f64, spread: f64) -> Spread {
        Spread { median_us, spread }
    }

    /// The duration for the standard normal draw `z`.
    pub fn at(&self, z: f64) -> f64 {
        self.median_us * (self.spread * z).exp()
    }
}

/// How the store answers (see [`StoreKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Amazon S3: a fan-in is three requests (two listings and a write), and request rates
    /// per prefix are limited.
    S3,
    /// Redis: a fan-in is one request; no request-rate limit modelled.
    Redis,
    /// The local platform's shared memory: operations are memory copies.
    SharedMemory,
}

/// The store's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreParameters {
    pub kind: StoreKind,
    /// Time to first byte of a read, and of a write's acknowledgement, without the transfer.
    pub read_latency_us: Spread,
    pub write_latency_us: Spread,
    /// A store operation that moves no value (a claim, a done mark, a lease read, a fan-in's
    /// request).
    pub small_operation_us: Spread,
    /// Transfer rates of one connection, reading and writing; a function's own bandwidth may
    /// be lower. (A shared-memory store maps what it reads: reads cost no copy.)
    pub read_bandwidth_bytes_per_s: f64,
    pub write_bandwidth_bytes_per_s: f64,
    /// Request rates the store sustains per key prefix (S3: 3,500 writes and 5,500 reads per
    /// second per prefix); `None` for none. Requests over the rate wait for their turn.
    pub writes_per_s_per_prefix: Option<f64>,
    pub reads_per_s_per_prefix: Option<f64>,
}

/// The platform's model: functions, their instances and the client around them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformParameters {
    /// The set's name (`lambda`, `lambda-2020`, `local`, or the user's).
    pub name: String,
    /// What the set describes, in a sentence.
    pub description: String,
    /// Where each figure comes from, by parameter name; "assumed" where nothing is measured.
    pub sources: Vec<(String, String)>,
    /// From the client's asynchronous invoke to the function's start on a warm instance.
    pub client_invoke_latency_us: Spread,
    /// From a function's asynchronous invoke of a child to the child's start (warm).
    pub function_invoke_latency_us: Spread,
    /// A new instance's start before its first invocation runs: a base, plus a time per MB
    /// of deployment package (imports dominate a Python function's cold start).
    pub cold_start_us: Spread,
    pub cold_start_per_package_mb_us: f64,
    pub package_mb: f64,
    /// Instances that may run at once (the account's or the function's reserved concurrency).
    pub concurrency_limit: u32,
    /// Instances that may start at once at the beginning, then how many more every 10 seconds
    /// (Lambda today: 1,000 every 10 s per function; in 2020: a burst of 3,000 in us-east-1,
    /// then 500 a minute).
    pub burst_instances: u32,
    pub new_instances_per_10_s: f64,
    /// An event over the concurrency limit waits, then is tried again after this delay
    /// (Lambda keeps asynchronous events and retries them).
    pub throttle_retry_us: Spread,
    /// The memory size at which a function has one full vCPU, and the most vCPUs it can get.
    pub full_vcpu_memory_mb: f64,
    pub max_vcpus: f64,
    /// How fast a task runs here against the machine its durations were measured on (1.0: as
    /// fast; 0.8: 25% slower).
    pub task_speed: f64,
    /// A function's network bandwidth to the store (at a full vCPU; proportional below).
    pub function_bandwidth_bytes_per_s: f64,
    /// The store the functions use.
    pub store: StoreParameters,
    /// From a function's send on the result channel to the client's receive.
    pub channel_latency_us: Spread,
    /// The client: time per task of turning the collection into a graph and a plan, and of
    /// pickling a batch's tasks; its own bandwidth to the store; store operations it keeps in
    /// flight at once.
    pub client_graph_per_task_us: f64,
    pub client_pickle_per_task_us: f64,
    pub client_bandwidth_bytes_per_s: f64,
    pub client_operations_in_flight: usize,
    /// The function's memory without the values of the batch (interpreter, libraries).
    pub baseline_memory_bytes: u64,
    /// A function's own time per batch besides the store (unpickling its tasks and inputs,
    /// the handler's steps) and per task besides the task (the handler's loop, the record),
    /// on one vCPU.
    pub function_batch_overhead_us: f64,
    pub function_task_overhead_us: f64,
}

/// The names of the parameter sets [`PlatformParameters::named`] knows.
pub const PARAMETER_SETS: [&str; 3] = ["lambda", "lambda-2020", "local"];

impl PlatformParameters {
    /// A named set: `lambda` (AWS Lambda today, S3), `lambda-2020` (the Wukong paper's
    /// setup: Lambda as of 2020 with a Redis store), `local` (this project's local platform
    /// as measured on its development machine).
    pub fn named(name: &str) -> Option<PlatformParameters> {
        match name {
            "lambda" => Some(lambda_today()),
            "lambda-2020" => Some(lambda_2020()),
            "local" => Some(local()),
            _ => None,
        }
    }

    /// The share of a vCPU a function of `memory_mb` gets (at most `max_vcpus`; a task uses
    /// one, so its speed is capped at one).
    pub fn cpu_share(&self, memory_mb: f64) -> f64 {
        (memory_mb / self.full_vcpu_memory_mb).min(self.max_vcpus)
    }

    /// A function's bandwidth at `memory_mb`: proportional to its vCPU share below one vCPU.
    pub fn function_bandwidth(&self, memory_mb: f64) -> f64 {
        self.function_bandwidth_bytes_per_s * self.cpu_share(memory_mb).min(1.0)
    }
}

fn sources(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
        .collect()
}

const MS: f64 = 1_000.0;
const MB: f64 = 1_000_000.0;

/// S3 as AWS documents its request rates and as functions measure its latency.
fn s3(bandwidth_bytes_per_s: f64) -> StoreParameters {
    StoreParameters {
        kind: StoreKind::S3,
        read_latency_us: Spread::new(20.0 * MS, 0.4),
        write_latency_us: Spread::new(35.0 * MS, 0.4),
        small_operation_us: Spread::new(15.0 * MS, 0.4),
        read_bandwidth_bytes_per_s: bandwidth_bytes_per_s,
        write_bandwidth_bytes_per_s: bandwidth_bytes_per_s,
        writes_per_s_per_prefix: Some(3_500.0),
        reads_per_s_per_prefix: Some(5_500.0),
    }
}

/// AWS Lambda today, with the cluster's S3 bucket as the store.
fn lambda_today() -> PlatformParameters {
    PlatformParameters {
        name: "lambda".into(),
        description: "AWS Lambda today (x86_64, Python, zip package), S3 as the store".into(),
        sources: sources(&[
            (
                "new_instances_per_10_s",
                "AWS Lambda documentation, 'Lambda scaling behavior' (since November 2023): \
                 each function scales by 1,000 concurrent executions every 10 seconds",
            ),
            (
                "concurrency_limit",
                "AWS Lambda quotas: 1,000 concurrent executions per region by default, raised \
                 on request; set by max_concurrency",
            ),
            (
                "full_vcpu_memory_mb, max_vcpus",
                "AWS Lambda documentation, 'Memory and computing power': one vCPU at 1,769 MB, \
                 up to 6 vCPUs at 10,240 MB",
            ),
            (
                "store.writes_per_s_per_prefix, store.reads_per_s_per_prefix",
                "Amazon S3 documentation, 'Best practices design patterns: optimizing Amazon \
                 S3 performance': 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD per second \
                 per prefix",
            ),
            (
                "cold_start_us, cold_start_per_package_mb_us",
                "assumed from public measurements of Python functions: about 0.25 s without \
                 libraries, about a second more with NumPy and Dask (43 MB zipped)",
            ),
            (
                "client_invoke_latency_us, function_invoke_latency_us",
                "assumed from public measurements: tens of milliseconds from an asynchronous \
                 Invoke to the handler's start on a warm instance",
            ),
            (
                "function_bandwidth_bytes_per_s",
                "assumed from public measurements of Lambda to S3 in one region: about 90 MB/s \
                 per function at a full vCPU",
            ),
            (
                "store latencies",
                "assumed from public measurements: S3 first-byte latency 15-35 ms",
            ),
            (
                "channel_latency_us",
                "assumed: an SQS send and long-polled receive",
            ),
            (
                "task_speed",
                "assumed: a Lambda vCPU as fast as one core here",
            ),
        ]),
        client_invoke_latency_us: Spread::new(40.0 * MS, 0.3),
        function_invoke_latency_us: Spread::new(30.0 * MS, 0.3),
        cold_start_us: Spread::new(250.0 * MS, 0.25),
        cold_start_per_package_mb_us: 22.0 * MS,
        package_mb: 43.7,
        concurrency_limit: 1_000,
        burst_instances: 1_000,
        new_instances_per_10_s: 1_000.0,
        throttle_retry_us: Spread::new(1_000.0 * MS, 0.3),
        full_vcpu_memory_mb: 1_769.0,
        max_vcpus: 6.0,
        task_speed: 1.0,
        function_bandwidth_bytes_per_s: 90.0 * MB,
        store: s3(90.0 * MB),
        channel_latency_us: Spread::new(20.0 * MS, 0.3),
        client_graph_per_task_us: 4.0,
        client_pickle_per_task_us: 10.0,
        client_bandwidth_bytes_per_s: 100.0 * MB,
        client_operations_in_flight: 64,
        baseline_memory_bytes: 150_000_000,
        // As measured on the local platform: Python's own work, at a vCPU like a core here.
        function_batch_overhead_us: 700.0,
        function_task_overhead_us: 3.3,
    }
}

/// AWS Lambda as the Wukong paper (SoCC 2020) used it: 3,008 MB functions, a burst of 3,000
/// instances then 500 a minute, intermediate values in Redis.
fn lambda_2020() -> PlatformParameters {
    let mut parameters = lambda_today();
    parameters.name = "lambda-2020".into();
    parameters.description = "AWS Lambda as of 2020 (the Wukong paper's setup), Redis as the \
                              store"
        .into();
    parameters.sources = sources(&[
        (
            "burst_instances, new_instances_per_10_s",
            "AWS Lambda documentation as of 2020: an initial burst of 3,000 concurrent \
             executions in us-east-1, then 500 more each minute",
        ),
        (
            "concurrency_limit",
            "the Wukong paper runs up to thousands of concurrent functions; assumed 5,000",
        ),
        (
            "full_vcpu_memory_mb",
            "AWS Lambda documentation: CPU proportional to memory, one vCPU at 1,769 MB",
        ),
        (
            "store",
            "the Wukong paper stores intermediate values in Redis; assumed 1 ms per operation \
             and 100 MB/s per connection",
        ),
        (
            "cold_start_us, latencies, bandwidth",
            "assumed as for 'lambda', Lambda of 2020 being somewhat slower to start (Firecracker \
             snapshots and faster scaling came later)",
        ),
    ]);
    parameters.burst_instances = 3_000;
    parameters.new_instances_per_10_s = 500.0 / 6.0;
    parameters.concurrency_limit = 5_000;
    parameters.cold_start_us = Spread::new(350.0 * MS, 0.3);
    parameters.client_invoke_latency_us = Spread::new(50.0 * MS, 0.3);
    parameters.function_invoke_latency_us = Spread::new(40.0 * MS, 0.3);
    parameters.function_bandwidth_bytes_per_s = 70.0 * MB;
    parameters.store = StoreParameters {
        kind: StoreKind::Redis,
        read_latency_us: Spread::new(1.0 * MS, 0.3),
        write_latency_us: Spread::new(1.0 * MS, 0.3),
        small_operation_us: Spread::new(0.8 * MS, 0.3),
        read_bandwidth_bytes_per_s: 100.0 * MB,
        write_bandwidth_bytes_per_s: 100.0 * MB,
        writes_per_s_per_prefix: None,
        reads_per_s_per_prefix: None,
    };
    parameters
}

/// The local platform on the development machine (2 cores), with shared memory as the store:
/// per-batch and per-task overheads and latencies from the records of `python -m
/// dask_serverless.simulation.calibrate` (see docs/simulator.md).
fn local() -> PlatformParameters {
    PlatformParameters {
        name: "local".into(),
        description: "the local platform on its development machine (2 cores, shared memory)"
            .into(),
        sources: sources(&[(
            "every parameter",
            "measured on the local platform of the development machine (docs/simulator.md)",
        )]),
        // The local platform starts events in the order they were sent: no spread.
        client_invoke_latency_us: Spread::fixed(2.0 * MS),
        function_invoke_latency_us: Spread::fixed(2.0 * MS),
        cold_start_us: Spread::new(600.0 * MS, 0.2),
        cold_start_per_package_mb_us: 0.0,
        package_mb: 0.0,
        concurrency_limit: 2,
        burst_instances: 2,
        new_instances_per_10_s: 1_000.0,
        throttle_retry_us: Spread::fixed(0.0),
        full_vcpu_memory_mb: 1.0,
        max_vcpus: 1.0,
        task_speed: 1.0,
        function_bandwidth_bytes_per_s: 50_000.0 * MB,
        store: StoreParameters {
            kind: StoreKind::SharedMemory,
            read_latency_us: Spread::new(30.0, 0.3),
            write_latency_us: Spread::new(60.0, 0.3),
            small_operation_us: Spread::new(20.0, 0.3),
            // Writes copy into shared memory (svd-compressed stores 820 MB in 0.34 s); reads
            // map it.
            read_bandwidth_bytes_per_s: 50_000.0 * MB,
            write_bandwidth_bytes_per_s: 2_400.0 * MB,
            writes_per_s_per_prefix: None,
            reads_per_s_per_prefix: None,
        },
        channel_latency_us: Spread::new(1.0 * MS, 0.3),
        client_graph_per_task_us: 3.5,
        client_pickle_per_task_us: 10.0,
        client_bandwidth_bytes_per_s: 2_000.0 * MB,
        client_operations_in_flight: 64,
        baseline_memory_bytes: 120_000_000,
        function_batch_overhead_us: 700.0,
        function_task_overhead_us: 3.3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_set_exists_has_sources_and_round_trips() {
        for name in PARAMETER_SETS {
            let parameters = PlatformParameters::named(name).unwrap();
            assert_eq!(parameters.name, name);
            assert!(!parameters.sources.is_empty());
            let text = serde_json::to_string(&parameters).unwrap();
            let back: PlatformParameters = serde_json::from_str(&text).unwrap();
            assert_eq!(back, parameters);
        }
        assert!(PlatformParameters::named("lambda-1999").is_none());
    }

    #[test]
    fn cpu_follows_memory_up_to_six_vcpus() {
        let lambda = PlatformParameters::named("lambda").unwrap();
        assert!((lambda.cpu_share(1_769.0) - 1.0).abs() < 1e-9);
        assert!((lambda.cpu_share(884.5) - 0.5).abs() < 1e-9);
        assert!((lambda.cpu_share(10_240.0) - 10_240.0 / 1_769.0).abs() < 1e-9);
        assert_eq!(lambda.cpu_share(100_000.0), 6.0);
        assert_eq!(lambda.function_bandwidth(3_538.0), 90.0 * MB);
    }
}
