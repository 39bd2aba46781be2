//! Polling walcast's HTTP endpoints (metrics, probes, status) from a test.

use std::path::Path;
use std::time::{Duration, Instant};

/// The value of the sample whose series (name and labels) is exactly `series`, or
/// whose line starts with `series` when it names no labels' end.
pub(crate) fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// The status and body of a GET (status 0 when nothing answered).
pub(crate) async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Polls `url` (at most `limit`) until `done` accepts its answer; on failure shows the
/// last answer and, when given, the excerpt of walcast's log.
pub(crate) async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    limit: Duration,
    what: &str,
    log: Option<&Path>,
    done: impl Fn(u16, &str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        let (status, body) = get(http, url).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: last answer {status} {}\n{}",
            body.chars().take(3000).collect::<String>(),
            log.map(super::log_excerpt).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
