//! A test scenario on public.orders, built in one call: the table, an oracle slot
//! created before any change, a connector file pointed at the chosen Kafka and registry,
//! `walcast setup` run; then walcast started and, at the end, the topic compared with
//! the oracle after a clean stop.

use std::path::PathBuf;
use std::process::Child;

use super::{
    consume, log_excerpt, settled_oracle, start_walcast, stop_with_sigterm, walcast, TestDb,
    WalcastProcess,
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
        Self::builder(db, name, kafka, registry).create()
    }

    /// A scenario with more said than [`Self::new`] takes.
    pub fn builder<'a>(
        db: &'a TestDb,
        name: &str,
        kafka: &str,
        registry: &str,
    ) -> ScenarioBuilder<'a> {
        ScenarioBuilder {
            db,
            name: name.to_owned(),
            kafka: kafka.to_owned(),
            registry: registry.to_owned(),
            before_rule: String::new(),
            total_type: "numeric(10,2)".to_owned(),
        }
    }

    /// Starts `walcast run` and waits until its slot streams.
    pub fn start(&self, db: &TestDb) -> WalcastProcess {
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

/// How an [`OrdersScenario`] is made.
pub struct ScenarioBuilder<'a> {
    db: &'a TestDb,
    name: String,
    kafka: String,
    registry: String,
    before_rule: String,
    total_type: String,
}

impl ScenarioBuilder<'_> {
    /// More of the connector file, before the table rule (e.g. a `[delivery]` section).
    pub fn before_rule(mut self, text: &str) -> Self {
        text.clone_into(&mut self.before_rule);
        self
    }

    /// The type of public.orders' `total` column (default `numeric(10,2)`).
    pub fn total_type(mut self, ty: &str) -> Self {
        ty.clone_into(&mut self.total_type);
        self
    }

    /// The table, the oracle slot, the connector file, and `walcast setup` run on it.
    pub fn create(self) -> OrdersScenario {
        let db = self.db;
        db.psql(&format!(
            "CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, total {})",
            self.total_type
        ));
        let oracle_slot = format!("oracle_{}", db.name);
        db.psql(&format!(
            "SELECT pg_create_logical_replication_slot('{oracle_slot}', 'test_decoding')"
        ));
        let rules = format!("{}\n[tables.\"public.orders\"]", self.before_rule);
        let file = db.connector_with_registry(&self.name, "", &rules, &self.registry);
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("bootstrap_servers = ") {
                    format!("bootstrap_servers = \"{}\"\n", self.kafka)
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&file, text).unwrap();
        let setup = walcast(&["setup", file.to_str().unwrap()], &[]);
        assert_eq!(
            setup.code,
            Some(0),
            "walcast setup {}: {}",
            self.name,
            setup.stderr
        );
        OrdersScenario {
            name: self.name,
            oracle_slot,
            file,
            log: db.dir.path().join("walcast.log"),
            kafka: self.kafka,
            registry: self.registry,
        }
    }
}
