//! walcast as a child process of a test: started on a connector file with JSON logs
//! appended to a file, or started and waited for until its slot streams.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::TestDb;

/// Starts `walcast run` on `file`, its JSON logs appended to `log`.
pub(crate) fn start_walcast(file: &Path, log: &Path) -> Child {
    start_walcast_with_env(file, log, &[])
}

/// [`start_walcast`] with more environment (a failpoint, a secret). The test's own
/// `RUST_LOG` and `WALCAST_FAILPOINT` are not passed on.
pub(crate) fn start_walcast_with_env(file: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walcast"));
    cmd.args(["--log-format", "json", "run", file.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("WALCAST_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start walcast")
}

/// Starts walcast on `file` and waits until its slot streams.
pub(crate) fn start_streaming(db: &TestDb, file: &Path, name: &str) -> Child {
    assert_eq!(
        super::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let walcast = start_walcast(file, &log);
    db.wait_for_slot(&format!("walcast_{name}"), true);
    walcast
}
