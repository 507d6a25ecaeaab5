//! Faults of the function itself, injected by the invocation session when its run carries a
//! chaos setting (a testing aid; see the `dask-serverless-chaos` crate).
//!
//! Each invocation draws, from the seed and its identity (the run when the setting came from
//! the environment, the batch it was invoked for, its attempt), whether and where it is killed,
//! whether it straggles, and its cold-start delay:
//!
//! * **kill**: the process exits with status 137, as after a `SIGKILL`, at its [`KillPoint`]:
//!   before its claim, at the second task boundary of the invocation (a task ran, the next
//!   has not), after a batch's done mark (its outputs are stored) before its fan-ins, after a
//!   fan-in released a child before invoking it, or when loading a batch it becomes. A point
//!   the invocation never reaches (no child to invoke) kills nothing;
//! * **straggle**: at each task boundary the function sleeps `slowdown - 1` times the time
//!   since the previous boundary, so it runs `slowdown` times slower;
//! * **cold**: the invocation sleeps its cold-start delay before it starts.
//!
//! Every fault is recorded before it happens (see `Chaos::record`): a killed process has
//! written its line.

use std::time::{Duration, Instant};

use dask_serverless_chaos::{Chaos, Fault, KillPoint};

/// The faults one invocation draws, and where it is.
#[derive(Debug)]
pub(crate) struct FunctionFaults {
    chaos: Chaos,
    run: String,
    batch: String,
    attempt: String,
    identity: String,
    kill: Option<KillPoint>,
    slowdown: f64,
    boundaries: u64,
    previous_boundary: Instant,
}

impl FunctionFaults {
    /// The faults of the invocation of `batch` at `attempt` in `run`, if the run has chaos;
    /// `per_run_seed` says whether the seed already differs between runs (a run's own
    /// setting) or the run id must tell runs apart (a setting from the environment).
    pub(crate) fn draw(
        chaos: Chaos,
        per_run_seed: bool,
        run: &str,
        batch: u32,
        attempt: u32,
    ) -> FunctionFaults {
        let run = if per_run_seed { "" } else { run };
        let (batch, attempt) = (batch.to_string(), attempt.to_string());
        let identity = [run, batch.as_str(), attempt.as_str()];
        FunctionFaults {
            kill: chaos.kill_point(&identity),
            slowdown: chaos.slowdown(&identity),
            identity: format!("run {run} batch {batch} attempt {attempt}"),
            run: run.to_owned(),
            batch,
            attempt,
            boundaries: 0,
            previous_boundary: Instant::now(),
            chaos,
        }
    }

    /// The cold-start delay to sleep before starting, recorded.
    pub(crate) fn cold_start(&self) -> Duration {
        let identity = [self.run.as_str(), &self.batch, &self.attempt];
        let delay = self.chaos.cold_start_ms(&identity);
        if delay > 0 {
            self.chaos
                .record(Fault::Cold, &format!("{} {delay} ms", self.identity));
        }
        Duration::from_millis(delay)
    }

    /// Kills the process if this invocation dies at `point`.
    pub(crate) fn at(&self, point: KillPoint) {
        if self.kill == Some(point) {
            self.chaos.record(
                Fault::Kill,
                &format!("{} at {}", self.identity, point.name()),
            );
            eprintln!(
                "dask-serverless: chaos kills this function ({}, {})",
                self.identity,
                point.name()
            );
            std::process::exit(137);
        }
    }

    /// A task boundary: the mid-task kill, and a straggler's sleep.
    pub(crate) fn boundary(&mut self) {
        self.boundaries += 1;
        if self.boundaries >= 2 {
            self.at(KillPoint::MidTask);
        }
        if self.slowdown > 1.0 {
            let since = self.previous_boundary.elapsed();
            if self.boundaries == 1 {
                self.chaos.record(
                    Fault::Straggle,
                    &format!("{} x{}", self.identity, self.slowdown),
                );
            }
            std::thread::sleep(since.mul_f64(self.slowdown - 1.0));
        }
        self.previous_boundary = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straggler_sleeps_its_slowdown_at_each_boundary() {
        let chaos = Chaos::parse("straggle=1,slowdown=3;seed=1").unwrap();
        let mut faults = FunctionFaults::draw(chaos.clone(), true, "run", 1, 1);
        faults.boundary();
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        faults.boundary();
        // Twice the 20 ms since the previous boundary.
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(chaos.counters().get(Fault::Straggle), 1);
    }

    #[test]
    fn draws_depend_on_the_invocation_and_replay() {
        let chaos = Chaos::parse("kill=0.5,cold=0.5;seed=3").unwrap();
        let kills = |per_run_seed: bool, run: &str| -> Vec<Option<KillPoint>> {
            (0..40)
                .map(|batch| FunctionFaults::draw(chaos.clone(), per_run_seed, run, batch, 1).kill)
                .collect()
        };
        assert_eq!(
            kills(true, "run-a"),
            kills(true, "run-b"),
            "a per-run seed ignores the run"
        );
        assert_ne!(kills(false, "run-a"), kills(false, "run-b"));
        assert_eq!(kills(false, "run-a"), kills(false, "run-a"));
        let killed = kills(true, "run").iter().flatten().count();
        assert!((10..30).contains(&killed), "{killed} of 40 killed");
        let attempt_two = FunctionFaults::draw(chaos.clone(), true, "run", 0, 2).kill;
        let different_attempts = (0..40).any(|batch| {
            FunctionFaults::draw(chaos.clone(), true, "run", batch, 1).kill
                != FunctionFaults::draw(chaos.clone(), true, "run", batch, 2).kill
        });
        assert!(
            different_attempts,
            "{attempt_two:?}: a recovery draws again"
        );
    }
}
