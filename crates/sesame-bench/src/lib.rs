//! The load generators of Sesame and what they share.
//!
//! Three binaries: `sesame-bench` (password + code sign-ins against the real `sesame` binary),
//! `sesame-phone-bench` (passwordless phone sign-ins, server in-process) and
//! `sesame-push-bench` (request delivery latency, memory per idle connected device,
//! notification sign-ins). This library holds the one client they drive the server with:
//!
//! - [`http`]: the browser side: cookie jar, pages and their fields, the sign-in steps;
//! - [`phone`]: the phone side: event streams and signed approvals;
//! - [`process`]: the real server as a child process;
//! - [`setup`]: users, devices and the in-process server: the only module that uses the
//!   store's and the server's Rust API;
//! - [`procfs`]: memory and CPU time from `/proc`;
//! - [`stats`]: percentiles and latency summaries;
//! - [`argon`]: the raw Argon2id rate of this machine.
//!
//! Everything targets 127.0.0.1 only.

pub mod argon;
pub mod attack;
pub mod http;
pub mod phone;
pub mod process;
pub mod procfs;
pub mod setup;
pub mod stats;

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The load generator's runtime: the calling thread alone for `threads` <= 1, else that many
/// workers named `bench-client`.
pub fn client_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.thread_name("bench-client").enable_all().build()
}

/// The summaries' last line: `result:` and `pass`, or FAIL with the `failures`.
pub fn result_line(pass: &str, failures: &[String]) -> String {
    let result = if failures.is_empty() {
        pass.to_string()
    } else {
        format!("FAIL ({})", failures.join("; "))
    };
    format!("result:              {result}")
}

/// Writes the summary `json` to `path`, pretty-printed, and says so on stderr.
pub fn write_json(path: &std::path::Path, json: &serde_json::Value) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::write(path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("summary written to {}", path.display());
    Ok(())
}
