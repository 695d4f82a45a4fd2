//! Memory and CPU time of processes, threads and the whole machine, from `/proc` (Linux).

use std::collections::BTreeMap;
use std::time::Instant;

/// Linux exports process CPU times in USER_HZ, which is 100 on every supported platform.
pub const USER_HZ: f64 = 100.0;

/// The name and utime + stime in seconds, from a `/proc/.../stat` line.
pub fn stat_cpu(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let f: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 0; utime and stime are fields 11 and 12.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((comm, (ut + st) / USER_HZ))
}

/// `VmRSS` and `VmHWM` (peak) of process `pid` in KiB (0 when unknown).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds of process `pid` so far, exited threads included.
pub fn process_cpu(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| stat_cpu(&t))
        .map_or(0.0, |(_, c)| c)
}

/// The live threads of process `pid`: id, name and CPU seconds.
pub fn threads_cpu(pid: u32) -> Vec<(u32, String, f64)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let tid = e.file_name().to_string_lossy().parse().unwrap_or(0);
            if let Some((name, c)) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|t| stat_cpu(&t))
            {
                out.push((tid, name, c));
            }
        }
    }
    out
}

/// Cores each thread (by name) kept busy from `earlier` to `later`, CPU seconds per thread
/// name taken `secs` apart; names only in `earlier` (threads that exited) are left out.
pub fn cores_by_thread(
    earlier: &BTreeMap<String, f64>,
    later: &BTreeMap<String, f64>,
    secs: f64,
) -> BTreeMap<String, f64> {
    later
        .iter()
        .map(|(name, c)| {
            let d = c - earlier.get(name).copied().unwrap_or(0.0);
            (name.clone(), d / secs)
        })
        .collect()
}

/// Busy and total time of all CPUs together, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemCpu {
    pub busy: f64,
    pub total: f64,
}

impl SystemCpu {
    pub fn now() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    fn parse(text: &str) -> Self {
        let Some(line) = text.lines().next() else {
            return Self::default();
        };
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal; guest time is already in user/nice.
        let total: f64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
        SystemCpu {
            busy: total - idle,
            total,
        }
    }

    /// Cores busy on average from `earlier` to this sample, out of `cores`.
    pub fn cores_busy_since(&self, earlier: &SystemCpu, cores: usize) -> f64 {
        (self.busy - earlier.busy) / (self.total - earlier.total).max(1e-9) * cores as f64
    }
}

/// The summaries' warning when processes other than the server and the load generator kept
/// more than 0.15 cores busy.
pub fn noisy(other_cores: f64) -> &'static str {
    if other_cores > 0.15 {
        "  <- NOISY MACHINE: figures unreliable"
    } else {
        ""
    }
}

/// Samples `f` at `start` and at `end` (a measured window), in a task of the current runtime.
pub fn sample_window<T: Send + 'static>(
    start: Instant,
    end: Instant,
    f: impl Fn() -> T + Send + 'static,
) -> tokio::task::JoinHandle<(T, T)> {
    tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let a = f();
        tokio::time::sleep_until(end.into()).await;
        (a, f())
    })
}

/// The soft limit on open files of this process.
pub fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "42 (tokio rt) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0";
        assert_eq!(stat_cpu(line), Some(("tokio rt".into(), 4.0)));
        assert_eq!(stat_cpu("garbage"), None);
    }

    #[test]
    fn system_cpu_leaves_out_idle_iowait_and_guest_time() {
        let a = SystemCpu::parse("cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 1 2 3");
        assert_eq!((a.busy, a.total), (150.0, 1000.0));
        let b = SystemCpu::parse("cpu  200 0 75 1675 50 0 0 0 40 0\n");
        assert_eq!(b.cores_busy_since(&a, 2), 0.25);
        assert_eq!(SystemCpu::parse("").total, 0.0);
    }

    #[test]
    fn this_process_has_memory_cpu_and_threads() {
        let me = std::process::id();
        let (rss, peak) = memory_kib(me);
        assert!(rss > 0 && peak >= rss);
        assert!(process_cpu(me) >= 0.0);
        assert!(threads_cpu(me).iter().any(|(tid, _, _)| *tid == me));
        assert!(open_files_limit().is_some());
    }
}
