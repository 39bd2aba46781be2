//! walcast produces to Kafka through a TCP proxy that cuts every connection several
//! times mid-stream, and once also refuses new connections for two seconds (see
//! `common::proxied_kafka`: the broker advertises the proxy, so no client bypasses it).
//! walcast must ride it out without exiting, and a read_committed consumer must find
//! every change of a test_decoding oracle exactly once, in commit order: nothing lost,
//! nothing repeated. In `exactly_once` mode (an idempotent producer's retries) and in
//! `transactional` mode (Kafka transactions cut in the middle).

use std::collections::{BTreeSet, HashMap};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::run_script;
use crate::common::{consume, settled_oracle, start_walcast};
use crate::common::{proxied_kafka, stack, start_registry, OrdersScenario, TestDb};
use crate::outages::{first_difference, stop, BackgroundWorkload, Guard};

/// Transactions `from..to` on public.orders: each inserts a row and updates it, every
/// third also deletes it; after every tenth, one transaction changes many rows at once
/// (updates the nine rows before it that are left, deletes two of them, inserts three
/// rows with negative ids).
fn workload(from: i32, to: i32) -> String {
    let mut sql = String::new();
    for i in from..to {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO orders VALUES ({i}, 'new', {i}.50); UPDATE orders SET status = 'paid' WHERE id = {i}; {} COMMIT;\n",
            if i % 3 == 0 { format!("DELETE FROM orders WHERE id = {i};") } else { String::new() }
        ));
        if i % 10 == 0 {
            sql.push_str(&format!(
                "BEGIN; UPDATE orders SET status = 'shipped' WHERE id > {i} - 10 AND id < {i}; \
                 DELETE FROM orders WHERE id > {i} - 10 AND id < {i} AND id % 4 = 0; \
                 INSERT INTO orders SELECT -g, 'bulk', g FROM generate_series({i} * 10, {i} * 10 + 2) g; COMMIT;\n"
            ));
        }
    }
    sql
}

/// How many changes `workload(1, to)` makes (the oracle must have seen as many).
fn workload_changes(to: i32) -> usize {
    let mut rows = BTreeSet::new();
    let mut changes = 0;
    for i in 1..to {
        changes += 2;
        rows.insert(i);
        if i % 3 == 0 {
            changes += 1;
            rows.remove(&i);
        }
        if i % 10 == 0 {
            let before: Vec<i32> = rows.range(i - 9..i).copied().collect();
            changes += before.len();
            for id in before.into_iter().filter(|id| id % 4 == 0) {
                changes += 1;
                rows.remove(&id);
            }
            changes += 3;
        }
    }
    changes
}

/// Changes that `got` holds more often than `expected` (repeated), and the other way
/// round (lost), for a failure message.
fn repeated_and_lost<T: std::hash::Hash + Eq + Clone + std::fmt::Debug>(
    got: &[T],
    expected: &[T],
) -> String {
    let mut count: HashMap<&T, i64> = HashMap::new();
    for c in got {
        *count.entry(c).or_default() += 1;
    }
    for c in expected {
        *count.entry(c).or_default() -= 1;
    }
    let repeated: Vec<_> = count.iter().filter(|(_, n)| **n > 0).collect();
    let lost: Vec<_> = count.iter().filter(|(_, n)| **n < 0).collect();
    format!(
        "{} repeated (e.g. {:?}), {} lost (e.g. {:?})",
        repeated.len(),
        repeated.iter().take(5).collect::<Vec<_>>(),
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    )
}

/// Waits (at most 30 s) until `slot` confirms the WAL written so far, i.e. Kafka
/// acknowledged every change before it; panics if walcast exits meanwhile.
fn wait_for_progress(db: &TestDb, slot: &str, walcast: &mut Child, log: &std::path::Path) {
    let now = db.psql("SELECT pg_current_wal_lsn()");
    let confirmed = format!(
        "SELECT confirmed_flush_lsn >= '{now}' FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    );
    let started = Instant::now();
    while db.psql(&confirmed) != "t" {
        if let Some(status) = walcast.try_wait().unwrap() {
            panic!(
                "walcast exited ({status}) instead of riding out the cut\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{slot} did not confirm {now} within 30 s\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The log lines in which librdkafka reported a broken or refused connection.
fn connection_errors(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains("\"target\":\"librdkafka\""))
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "disconnected",
                "connection refused",
                "transport",
                "brokers are down",
            ]
            .iter()
            .any(|what| l.contains(what))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_connections_cut_mid_stream_lose_and_repeat_nothing() {
    cuts_scenario("kcuts", "exactly_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_connections_cut_mid_transaction_lose_and_repeat_nothing() {
    cuts_scenario("kcutstx", "transactional").await;
}

async fn cuts_scenario(name: &str, mode: &str) {
    // The shared PostgreSQL and the proxied Kafka boot at the same time.
    let (stack, kafka) = std::thread::scope(|s| {
        let kafka = s.spawn(proxied_kafka);
        (stack(), kafka.join().unwrap())
    });
    // The proxy is this test's alone while it cuts.
    let _exclusive = kafka.exclusive.lock().await;
    let started = Instant::now();
    let proxy = &kafka.proxy;
    proxy.refuse(false);
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    // walcast reaches Kafka through the proxy only (setup too: it creates the topics).
    let scenario = OrdersScenario::builder(&db, name, &kafka.bootstrap, &registry.url())
        .before_rule(&format!("[delivery]\nmode = \"{mode}\""))
        .create();
    let (oracle_slot, file, log) = (scenario.oracle_slot, scenario.file, scenario.log);
    let mut walcast = Guard(Some(start_walcast(&file, &log)));
    let slot = format!("walcast_{name}");
    db.wait_for_slot(&slot, true);

    // A first part, acknowledged by Kafka (the slot confirms past it) before any cut.
    run_script(stack, &db.name, &workload(1, 100));
    wait_for_progress(&db, &slot, walcast.child(), &log);

    // The rest in small batches, one after the other (so walcast always has changes
    // to produce), straight to PostgreSQL, until the cuts are over (at most 10,000
    // transactions).
    let pause = Duration::from_millis(20);
    let writer = BackgroundWorkload::start(stack, &db.name, workload, 100, 10, pause, 10_000);
    // Four cuts 1.5 s into the stream each; at the third the proxy also refuses new
    // connections for 2 s. After each, walcast must get everything written before it
    // acknowledged (through new connections) before the next.
    let mut cuts = Vec::new();
    // Where walcast's log stood at each cut, and how many connections the proxy had
    // accepted: what follows shows librdkafka noticed, and that walcast reconnected.
    let mut log_at_cut = Vec::new();
    let mut accepted_at_cut = Vec::new();
    // Whether the slot had yet to confirm WAL written before the cut (changes walcast
    // was producing, or had produced and not yet confirmed).
    let mut behind = Vec::new();
    let behind_query = format!(
        "SELECT pg_current_wal_lsn() > confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}' AND database = '{}'",
        db.name
    );
    let log_len = || {
        std::fs::metadata(&log)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    };
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        log_at_cut.push(log_len());
        accepted_at_cut.push(proxy.accepted());
        behind.push(db.psql(&behind_query) == "t");
        if round == 2 {
            proxy.refuse(true);
            cuts.push(proxy.cut());
            std::thread::sleep(Duration::from_secs(2));
            if let Some(status) = walcast.child().try_wait().unwrap() {
                panic!(
                    "walcast exited ({status}) while Kafka was unreachable\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            proxy.refuse(false);
        } else {
            cuts.push(proxy.cut());
        }
        let reachable_at = Instant::now();
        wait_for_progress(&db, &slot, walcast.child(), &log);
        eprintln!(
            "{mode}: cut {} ({} connections, unconfirmed WAL: {}) at {:?}; caught up {:?} after Kafka was reachable again",
            round + 1,
            cuts[round],
            behind[round],
            started.elapsed(),
            reachable_at.elapsed()
        );
    }
    let wrote_through_the_cuts = !writer.is_finished();
    let written_to = writer.stop();
    run_script(stack, &db.name, &workload(written_to, written_to + 50));
    let transactions = written_to + 50 - 1;

    let expected = settled_oracle(&db, &oracle_slot);
    let topic = format!("{}.public.orders", db.name);
    // read_committed, straight from the broker's own listener (not through the proxy).
    let (got, tombstones) = consume(
        kafka.stack.kafka_bootstrap(),
        &topic,
        &registry.url(),
        expected.len(),
    )
    .await;
    accepted_at_cut.push(proxy.accepted());
    let reconnects_per_cut: Vec<u64> = accepted_at_cut.windows(2).map(|w| w[1] - w[0]).collect();
    let running = walcast.child().try_wait().unwrap();
    let stopped = stop(walcast.child());
    registry.shutdown().await.unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let noticed = connection_errors(&logs);
    let disconnects = noticed
        .iter()
        .filter(|l| l.contains("Disconnected"))
        .count();
    // Per cut: the log between it and the next, and librdkafka's connection errors there.
    log_at_cut.push(logs.len());
    let after_cut: Vec<String> = log_at_cut
        .windows(2)
        .map(|w| String::from_utf8_lossy(&logs.as_bytes()[w[0].min(w[1])..w[1]]).into_owned())
        .collect();
    let noticed_per_cut: Vec<usize> = after_cut
        .iter()
        .map(|part| connection_errors(part).len())
        .collect();
    let refused = connection_errors(&after_cut[2])
        .iter()
        .filter(|l| l.contains("Connection refused"))
        .count();

    assert_eq!(
        expected.len(),
        workload_changes(written_to + 50),
        "the oracle saw the whole workload ({transactions} transactions and their multi-row ones)"
    );
    assert!(
        wrote_through_the_cuts,
        "the workload ran until the last cut (it ended at {written_to})"
    );
    assert!(
        running.is_none(),
        "walcast rode out the cuts: it exited with {running:?}\n{logs}"
    );
    assert!(
        cuts.iter().all(|&n| n >= 1),
        "each cut hit walcast's connections: {cuts:?}"
    );
    assert!(
        reconnects_per_cut.iter().all(|&n| n >= 1),
        "walcast reconnected after each cut (new connections: {reconnects_per_cut:?})"
    );
    // librdkafka logs a broken connection (and sends it to walcast's error callback),
    // though not every one: an error identical to the broker's last is suppressed for
    // a while. So: disconnects seen, at least as many connection errors as cuts, and
    // the refused connections reported after the cut that came with them.
    assert!(
        disconnects >= 1 && noticed.len() >= cuts.len() && refused >= 1,
        "librdkafka reported the cuts in walcast's log ({disconnects} disconnects, {refused} refused connections after the third cut; connection errors after each cut: {noticed_per_cut:?})\n{logs}"
    );
    assert!(
        got == expected,
        "exactly once across the cut Kafka connections ({mode}): {}; {}\nlog:\n{logs}",
        first_difference(&got, &expected),
        repeated_and_lost(&got, &expected)
    );
    assert_eq!(
        tombstones,
        expected.iter().filter(|(op, ..)| op == "d").count(),
        "a tombstone after each delete"
    );
    assert!(
        stopped.success(),
        "clean stop on SIGTERM: {stopped}\n{logs}"
    );
    eprintln!(
        "{mode}: {} cuts ({cuts:?} connections, one with 2 s of refused connections), {reconnects_per_cut:?} new connections through the proxy after each, {} librdkafka connection errors logged ({noticed_per_cut:?} after each, {disconnects} disconnects, {refused} refused), {transactions} transactions: {} changes in {:?}",
        cuts.len(),
        noticed.len(),
        got.len(),
        started.elapsed()
    );
}
