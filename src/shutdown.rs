//! How long-running commands end and retry: one wait for SIGTERM or Ctrl-C, and one
//! backoff for reconnect loops.

use std::time::Duration;

/// Returns when the process is asked to stop: SIGTERM (what service managers and
/// Kubernetes send) or Ctrl-C. If the SIGTERM handler cannot be installed, Ctrl-C alone.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Exponential backoff with jitter: waits double from `first` up to `max`, each drawn
/// from 80–100% of its step, so many connectors that lost the same server do not
/// reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
    /// A per-instance pseudo-random sequence (jitter needs no cryptographic quality).
    seed: u64,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self {
            first,
            max,
            step: first,
            seed: hasher.finish() | 1,
        }
    }

    /// walcast's reconnect backoff: 0.5 s doubling to 30 s.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// How long to wait before the next attempt; the following one waits longer.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = 0.8 + 0.2 * (self.seed % 1_000) as f64 / 1_000.0;
        let wait = self.step.mul_f64(fraction);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// An attempt succeeded: the next failure starts from the first wait again.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_cap_with_at_most_a_fifth_off() {
        let mut backoff = Backoff::reconnect();
        let steps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
        for step in steps {
            let wait = backoff.next_wait().as_secs_f64();
            assert!(wait <= step && wait >= step * 0.8, "{wait} for step {step}");
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(500));
    }

    #[test]
    fn two_backoffs_do_not_wait_in_lockstep() {
        let waits = |mut b: Backoff| (0..6).map(|_| b.next_wait()).collect::<Vec<_>>();
        let (a, b) = (waits(Backoff::reconnect()), waits(Backoff::reconnect()));
        assert_ne!(a, b);
    }
}
