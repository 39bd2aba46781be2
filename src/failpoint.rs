//! Named crash points for fault tests. `WALCAST_FAILPOINT=<name>[:<n>]` makes the
//! process abort, as abruptly as `kill -9` (no flush, no checkpoint, no cleanup), the
//! n-th time (default: the first) it passes the point called `name`. Unset, a point
//! costs one check of a value read once.
//!
//! Points: `after_send` (a record handed to the producer), `before_confirm` (Kafka
//! acknowledged a transaction, before the checkpoint moves), `before_kafka_commit`
//! (transactional mode: the batch and its checkpoint record are sent, the Kafka
//! transaction not yet committed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Option<(String, u64)> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("WALCAST_FAILPOINT").ok()?;
        let (name, count) = match spec.split_once(':') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((name, count.max(1)))
    })
}

/// Passes the point `name`; aborts the process when it is the armed one and its count
/// is reached.
pub fn hit(name: &str) {
    let Some((armed, count)) = armed() else {
        return;
    };
    if armed == name && PASSED.fetch_add(1, Ordering::Relaxed) + 1 == *count {
        eprintln!("walcast: failpoint {name} reached ({count}); aborting");
        std::process::abort();
    }
}
