//! A test scenario on public.orders, built in one call: the table, an oracle slot
//! created before any change, a connector file pointed at the chosen Kafka and registry,
//! `walcast setup` run; then walcast started and, at the end, the topic compared with
//! the oracle after a clean stop.

use std::path::PathBuf;
use std::process::Child;

use super::{
    consume, log_excerpt, settled_oracle, start_walcast, stop_with_sigterm, walcast, TestDb,
};

/// One connector on public.orders and the oracle it is judged by.
pub struct OrdersScenario {
    pub name: String,
    pub oracle_slot: String,
    pub file: PathBuf,
    pub log: PathBuf,
    pub kafka: String,
    pub registry: String,
}

impl OrdersScenario {
    /// Creates public.orders and the oracle slot in `db`, writes connector `name`
    /// (bootstrap `kafka`, registry `registry`) and runs `walcast setup` on it.
    pub fn new(db: &TestDb, name: &str, kafka: &str, registry: &str) -> Self {
        db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))");
        let oracle_slot = format!("oracle_{}", db.name);
        db.psql(&format!(
            "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
        ));
        let file = db.connector_with_registry(name, "", "[tables.\"public.orders\"]", registry);
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("bootstrap_servers = ") {
                    format!("bootstrap_servers = \"{kafka}\"\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&file, text).unwrap();
        assert_eq!(
            walcast(&["setup", file.to_str().unwrap()], &[]).code,
            Some(0)
        );
        Self {
            name: name.to_owned(),
            oracle_slot,
            file,
            log: db.dir.path().join("walcast.log"),
            kafka: kafka.to_owned(),
            registry: registry.to_owned(),
        }
    }

    /// Starts `walcast run` and waits until its slot streams.
    pub fn start(&self, db: &TestDb) -> Child {
        let child = start_walcast(&self.file, &self.log);
        db.wait_for_slot(&format!("walcast_{}", self.name), true);
        child
    }

    /// Waits for the oracle to settle, reads the topic until it holds as many changes,
    /// stops walcast with SIGTERM, and asserts: `expected` changes, the topic equal to
    /// the oracle (exactly once, in order), a clean stop. Returns walcast's log.
    pub async fn assert_exactly_once(
        &self,
        db: &TestDb,
        walcast: &mut Child,
        expected: usize,
        across: &str,
    ) -> String {
        let oracle = settled_oracle(db, &self.oracle_slot);
        let topic = format!("{}.public.orders", db.name);
        let (got, _) = consume(&self.kafka, &topic, &self.registry, oracle.len()).await;
        let stopped = stop_with_sigterm(walcast);
        assert_eq!(oracle.len(), expected, "the oracle saw the whole workload");
        assert!(
            got == oracle,
            "exactly once across {across}: got {} changes, the oracle {}\n{}",
            got.len(),
            oracle.len(),
            log_excerpt(&self.log)
        );
        assert!(
            stopped.success(),
            "clean stop: {stopped}\n{}",
            log_excerpt(&self.log)
        );
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
