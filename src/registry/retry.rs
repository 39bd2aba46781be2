//! How the registry client retries: which failures, how often, how long it waits.

use std::time::Duration;

/// How often and how patiently a failed request is retried. Only connection errors,
/// timeouts, HTTP 5xx and 429 are retried; every other answer is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = one attempt only).
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 8 retries, 100 ms doubling up to 5 s: about 16 s in all before giving up.
    fn default() -> Self {
        Self {
            max_retries: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// For a running connector: 40 retries, 100 ms doubling up to 10 s, about 5½
    /// minutes in all, so a registry restart or a short outage only slows the stream
    /// (the reader waits; nothing is lost), and a long one stops the connector with a
    /// clear error instead of hanging without end.
    pub fn patient() -> Self {
        Self {
            max_retries: 40,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}
