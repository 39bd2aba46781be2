//! The downstream service in `examples/consumer/` (a Python read model kept in its own
//! PostgreSQL database from walcast's topics) end to end: after a workload with every
//! kind of change, the read model equals the source tables; killed mid-way (before it
//! committed its offsets, and with SIGKILL) and restarted, it still ends equal; a second
//! consumer group replaying from the beginning ends equal too. The scenario itself is
//! `examples/consumer/test_read_model.py`; this test gives it the shared PostgreSQL and
//! Kafka, a registry and this build of walcast.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{stack, start_registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_example_ends_equal_to_the_source_through_kills_and_replays() {
    let (_registry_dir, registry) = start_registry().await;
    let state = tempfile::tempdir().unwrap();
    let mut env = std::fs::read_to_string(stack().dir.join("stack.env")).unwrap();
    env.push_str(&format!("\nWALCAST_REGISTRY_URL={}\n", registry.url()));
    std::fs::write(state.path().join("stack.env"), env).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout")
        .arg("600")
        .arg("python3")
        .arg(root.join("examples/consumer/test_read_model.py"))
        .env("WALCAST_BIN", env!("CARGO_BIN_EXE_walcast"))
        .env("WALCAST_STATE_DIR", state.path())
        .env("WALCAST_TEST_WORKDIR", state.path().join("work"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run python3 (pip install -r examples/consumer/requirements.txt)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        out.status.success(),
        "examples/consumer/test_read_model.py failed ({}):\n{}\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr)
    );
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
    registry.shutdown().await.unwrap();
}
