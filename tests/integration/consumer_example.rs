//! The downstream services in `examples/` end to end, each given the shared PostgreSQL
//! and Kafka, a registry and this build of walcast:
//!
//! - `examples/consumer/`: a Python read model kept in its own PostgreSQL database from
//!   walcast's topics. After a workload with every kind of change, the read model equals
//!   the source tables; killed mid-way (before it committed its offsets, and with
//!   SIGKILL) and restarted, it still ends equal; a second consumer group replaying from
//!   the beginning ends equal too (`examples/consumer/test_read_model.py`).
//! - `examples/outbox/`: a shipping service consuming an orders service's outbox topics,
//!   exactly once in effect by event id through kills and restarts, rolled-back events
//!   never seen (`examples/outbox/test_shipping.py`).

use std::path::PathBuf;
use std::process::Command;

use crate::common::{stack, start_registry};

/// Runs `examples/<script>` against the shared stack with a registry of its own and
/// asserts it passed; prints its summary line.
async fn run_example(script: &str) {
    let (_registry_dir, registry) = start_registry().await;
    let state = tempfile::tempdir().unwrap();
    let mut env = std::fs::read_to_string(stack().dir.join("stack.env")).unwrap();
    env.push_str(&format!("\nWALCAST_REGISTRY_URL={}\n", registry.url()));
    std::fs::write(state.path().join("stack.env"), env).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout")
        .arg("600")
        .arg("python3")
        .arg(root.join("examples").join(script))
        .env("WALCAST_BIN", env!("CARGO_BIN_EXE_walcast"))
        .env("WALCAST_STATE_DIR", state.path())
        .env("WALCAST_TEST_WORKDIR", state.path().join("work"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run python3 (pip install -r examples/consumer/requirements.txt)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    assert!(
        out.status.success(),
        "examples/{script} failed ({}):\n{}\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr)
    );
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_example_ends_equal_to_the_source_through_kills_and_replays() {
    run_example("consumer/test_read_model.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_example_processes_each_committed_event_once_through_kills() {
    run_example("outbox/test_shipping.py").await;
}
