//! What a function measures about its own process: which instance it is, when the instance
//! started, and the CPU time and peak memory it used so far (the process's own counters, as
//! SAAF reads them on Lambda).
//!
//! An *instance* is a process that serves invocations one after another (a Lambda execution
//! environment, a worker of the local platform). Its id is Lambda's log stream name when there
//! is one (it names the execution environment), else the host and process id.

use std::sync::OnceLock;

/// The CPU time and peak memory of this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    pub user_us: u64,
    pub kernel_us: u64,
    pub peak_memory_bytes: u64,
}

/// Reads this process's usage (all its threads) from the kernel.
pub fn usage() -> ProcessUsage {
    // SAFETY: `getrusage` only writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to an owned `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return ProcessUsage::default();
    }
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    ProcessUsage {
        user_us: micros(usage.ru_utime),
        kernel_us: micros(usage.ru_stime),
        // Linux counts the peak resident set in kilobytes.
        peak_memory_bytes: usage.ru_maxrss as u64 * 1024,
    }
}

/// The id of this function instance (see the module documentation).
pub fn instance_id() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        if let Ok(stream) = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME")
            && !stream.is_empty()
        {
            return stream;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("{host}:{}", std::process::id())
    })
}

/// When this process started, µs since the Unix epoch (`None` when the kernel does not say).
pub fn started_us() -> Option<u64> {
    static STARTED: OnceLock<Option<u64>> = OnceLock::new();
    *STARTED.get_or_init(|| {
        // Field 22 of /proc/self/stat: start time in clock ticks after boot; `btime` in
        // /proc/stat: the boot time in seconds since the epoch.
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let ticks: u64 = after_name.split(' ').nth(19)?.parse().ok()?;
        let boot: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: `sysconf` has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if per_second <= 0 {
            return None;
        }
        Some(boot * 1_000_000 + ticks * 1_000_000 / per_second as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_and_memory_grow_with_work() {
        let before = usage();
        let cpu = |usage: ProcessUsage| usage.user_us + usage.kernel_us;
        let mut total = 0u64;
        let mut block = vec![0u8; 64 << 20];
        // Work until the counters show 50 ms more CPU time (a shared machine may give this
        // thread less than its wall time), within a generous deadline.
        let started = std::time::Instant::now();
        while cpu(usage()) < cpu(before) + 50_000 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no CPU time counted"
            );
            for (index, byte) in block.iter_mut().enumerate().step_by(4096) {
                *byte = byte.wrapping_add(index as u8);
                total = total.wrapping_add(u64::from(*byte));
            }
        }
        std::hint::black_box(total);
        assert!(usage().peak_memory_bytes >= 64 << 20, "{:?}", usage());
    }

    #[test]
    fn the_process_started_before_now_and_after_boot() {
        let started = started_us().expect("procfs says when the process started");
        let now = crate::now_micros();
        assert!(started <= now, "{started} > {now}");
        assert!(now - started < 24 * 3600 * 1_000_000, "started a day ago?");
        assert!(!instance_id().is_empty());
        assert_eq!(instance_id(), instance_id());
    }
}
