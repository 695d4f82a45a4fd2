//! Running the real `sesame` binary on a data directory, as an administrator would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `sesame --data-dir DIR ARGS` with `stdin` as its input and `env` added to its
/// environment.
pub fn run(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("SESAME_DATA_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sesame");
    if let Some(input) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A new installation in a temporary directory (`sesame init`), as admin commands need one.
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["init"], None, &[]);
    assert!(
        out.status.success(),
        "sesame init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
