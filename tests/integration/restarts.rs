//! A normal restart (SIGTERM, changes while down, start again) in each exactly-once
//! delivery mode, with several topics: nothing is repeated or lost, and nothing is
//! logged as an ERROR. Reading the topics back at the restart once logged librdkafka's
//! end-of-partition notice as an ERROR for every topic in transactional mode.

use crate::common::{
    consume_records, log_excerpt, stack, start_registry, start_streaming, start_walcast,
    stop_with_sigterm, TestDb,
};

const TABLES: usize = 4;

async fn restart_is_quiet_and_exact(mode: &str) {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    let mut tables = String::new();
    for i in 0..TABLES {
        db.psql(&format!(
            "CREATE TABLE public.r{i} (id int PRIMARY KEY, v text)"
        ));
        tables.push_str(&format!("[tables.\"public.r{i}\"]\n"));
    }
    let name = format!("restart_{mode}");
    let file = db.connector_with_sections(
        &name,
        &tables,
        &registry.url(),
        &format!("[delivery]\nmode = \"{mode}\""),
    );
    let mut walcast = start_streaming(&db, &file, &name);
    for i in 0..TABLES {
        db.psql(&format!("INSERT INTO r{i} VALUES (1, 'before')"));
    }
    let bootstrap = stack().kafka_bootstrap();
    for i in 0..TABLES {
        let topic = format!("{}.public.r{i}", db.name);
        consume_records(bootstrap, &topic, Some(&registry.url()), 1).await;
    }
    assert!(stop_with_sigterm(&mut walcast).success());

    for i in 0..TABLES {
        db.psql(&format!("INSERT INTO r{i} VALUES (2, 'while down')"));
    }
    let log = db.dir.path().join("walcast.log");
    let logged_before = std::fs::read_to_string(&log).unwrap().len();
    let mut walcast = start_walcast(&file, &log);
    for i in 0..TABLES {
        let topic = format!("{}.public.r{i}", db.name);
        let records = consume_records(bootstrap, &topic, Some(&registry.url()), 2).await;
        let ids: Vec<i64> = records
            .iter()
            .filter_map(|r| r.value.as_ref()?["after"]["id"].as_i64())
            .collect();
        assert_eq!(ids, vec![1, 2], "{topic}: each change once, in order");
    }
    assert!(stop_with_sigterm(&mut walcast).success());
    let text = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = text[logged_before..]
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "a normal restart logged ERROR lines:\n{}\n{}",
        errors.join("\n"),
        log_excerpt(&log)
    );
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_restart_logs_no_error_and_repeats_nothing() {
    restart_is_quiet_and_exact("transactional").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_restart_logs_no_error_and_repeats_nothing() {
    restart_is_quiet_and_exact("exactly_once").await;
}
