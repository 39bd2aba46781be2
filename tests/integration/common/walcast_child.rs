//! walcast as a child process of a test: started on a connector file with JSON logs
//! appended to a file, or started and waited for until its slot streams.

use std::process::{Child, Command, Stdio};

use super::TestDb;

pub(crate) fn start_walcast(file: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(["--log-format", "json", "run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start walcast")
}

/// Starts walcast on `file` and waits until its slot streams.
pub(crate) fn start_streaming(db: &TestDb, file: &std::path::Path, name: &str) -> Child {
    assert_eq!(
        super::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let walcast = start_walcast(file, &log);
    db.wait_for_slot(&format!("walcast_{name}"), true);
    walcast
}
