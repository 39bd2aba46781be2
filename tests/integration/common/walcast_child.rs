//! walcast as a child process of a test: started on a connector file with JSON logs
//! appended to a file, or started and waited for until its slot streams.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::TestDb;

/// A `walcast run` child process that is killed (SIGKILL) and reaped when dropped still
/// running, so a test that panics before stopping it leaves no walcast behind holding
/// its slot and ports. Derefs to the [`Child`] for signals, waits and exit statuses.
pub(crate) struct WalcastProcess(Child);

impl Deref for WalcastProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for WalcastProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for WalcastProcess {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `walcast run` on `file`, its JSON logs appended to `log`.
pub(crate) fn start_walcast(file: &Path, log: &Path) -> WalcastProcess {
    start_walcast_with_env(file, log, &[])
}

/// [`start_walcast`] with more environment (a failpoint, a secret). The test's own
/// `RUST_LOG` and `WALCAST_FAILPOINT` are not passed on.
pub(crate) fn start_walcast_with_env(
    file: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> WalcastProcess {
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
    WalcastProcess(cmd.spawn().expect("start walcast"))
}

/// Starts walcast on `file` and waits until its slot streams.
pub(crate) fn start_streaming(db: &TestDb, file: &Path, name: &str) -> WalcastProcess {
    assert_eq!(
        super::walcast(&["setup", file.to_str().unwrap()], &[]).code,
        Some(0)
    );
    let log = db.dir.path().join("walcast.log");
    let walcast = start_walcast(file, &log);
    db.wait_for_slot(&format!("walcast_{name}"), true);
    walcast
}
