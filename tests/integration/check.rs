//! `walcast check` against a good database and each kind of misconfiguration.

use crate::common::{replica_level_postgres, stack, start_registry, walcast, TestDb};

const ORDERS: &str =
    "CREATE TABLE public.orders (id bigint PRIMARY KEY, status text, total numeric(10,2))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_database_passes_every_check() {
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    let file = db.connector_with_registry(
        "good",
        "",
        "[tables.\"public.orders\"]\nfilter = \"id > 0\"",
        &registry.url(),
    );
    let setup = walcast(&["setup", file.to_str().unwrap()], &[]);
    assert_eq!(setup.code, Some(0), "{setup:?}");

    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.problems().is_empty(), "{run:?}");
    let out = &run.stdout;
    for expected in [
        "configuration is valid (connector good)",
        "wal_level is logical",
        "user postgres may replicate (superuser)",
        "slot walcast_good will be created",
        "a WAL sender is free",
        "table public.orders: primary key (id)",
        "publication walcast_good covers every captured table",
        "walcast's support tables exist",
        "connected to Kafka at",
        "Kafka would let this connector create its topics",
        &format!("schema registry at {} answers", registry.url()),
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    // The test server keeps max_slot_wal_keep_size unlimited: a warning, not a problem.
    assert!(
        out.contains("WARNING max_slot_wal_keep_size is unlimited (-1)"),
        "{out}"
    );
    assert!(
        run.lines()
            .iter()
            .all(|l| l.starts_with("ok ") || l.starts_with("WARNING ")),
        "{out}"
    );
    registry.shutdown().await.unwrap();
}

#[test]
fn an_unreachable_broker_or_registry_is_a_problem_naming_it() {
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    let file = db.connector("services", "", "[tables.\"public.orders\"]");
    // No registry listens on the default address in tests; a broker on port 9 refuses.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("http://127.0.0.1:8081", "http://127.0.0.1:9");
    std::fs::write(&file, &text).unwrap();
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.problems()
            .iter()
            .any(|p| p.contains("127.0.0.1:9") && p.contains("[registry] url")),
        "{run:?}"
    );
    let bootstrap = stack().kafka_bootstrap();
    std::fs::write(&file, text.replace(bootstrap, "127.0.0.1:9")).unwrap();
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.problems()
            .iter()
            .any(|p| p.contains("127.0.0.1:9") && p.contains("Kafka")),
        "{run:?}"
    );
}

#[test]
fn wal_level_replica_is_a_problem_with_the_fix() {
    let db = TestDb::new(replica_level_postgres());
    db.psql(ORDERS);
    let file = db.connector("replica", "", "[tables.\"public.orders\"]");
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let problems = run.problems();
    assert!(
        problems.iter().any(|p| p.contains("wal_level is replica")
            && p.contains("ALTER SYSTEM SET wal_level = logical")),
        "{run:?}"
    );
}

#[test]
fn tables_without_a_usable_key_are_problems() {
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    db.psql("CREATE TABLE public.events (at timestamptz, payload jsonb)");
    db.psql("CREATE TABLE public.logs (line text)");
    db.psql("ALTER TABLE public.logs REPLICA IDENTITY NOTHING");
    db.psql("CREATE TABLE public.audit (who text, what text)");
    db.psql("ALTER TABLE public.audit REPLICA IDENTITY FULL");
    db.psql("CREATE TABLE public.keyed (code text NOT NULL, v int)");
    let file = db.connector(
        "keys",
        "",
        "[tables.\"public.*\"]\n[tables.\"public.keyed\"]\nkey = [\"code\"]",
    );
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let problem = |table: &str, text: &str| {
        run.problems()
            .iter()
            .any(|p| p.contains(&format!("table {table}:")) && p.contains(text))
    };
    assert!(
        problem(
            "public.events",
            "has no primary key and REPLICA IDENTITY DEFAULT"
        ),
        "{run:?}"
    );
    assert!(problem("public.events", "set key = [...]"), "{run:?}");
    assert!(
        problem("public.logs", "REPLICA IDENTITY NOTHING"),
        "{run:?}"
    );
    // a configured key is not enough: PostgreSQL itself rejects updates without an identity
    assert!(problem("public.keyed", "REPLICA IDENTITY FULL"), "{run:?}");
    assert!(
        run.stdout
            .contains("ok      table public.audit: REPLICA IDENTITY FULL"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("ok      table public.orders: primary key (id)"),
        "{run:?}"
    );
}

#[test]
fn names_that_match_nothing_are_problems_with_their_position() {
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    let file = db.connector(
        "missing",
        "",
        "[tables.\"public.orders\"]\ncolumns = [\"id\", \"nope\"]\n[tables.\"public.ghost\"]\n[tables.\"sales.*\"]",
    );
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let p = run.problems().join("\n");
    assert!(
        p.contains("table public.ghost (") && p.contains("missing.toml:20:9) does not exist"),
        "{p}"
    );
    assert!(
        p.contains("pattern sales.* (") && p.contains("matches no table"),
        "{p}"
    );
    assert!(p.contains("columns names column `nope`"), "{p}");
}

#[test]
fn an_invalid_filter_is_reported_by_postgres() {
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    let file = db.connector(
        "filter",
        "",
        "[tables.\"public.orders\"]\nfilter = \"colour = 'red'\"",
    );
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.problems()
            .iter()
            .any(|p| p.contains("filter `colour = 'red'` is not valid SQL")
                && p.contains("column \"colour\" does not exist")),
        "{run:?}"
    );
}

#[test]
fn unreachable_database_is_one_line_and_non_zero() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens there now
    let db = TestDb::new(stack());
    let file = db.connector("gone", "", "[tables.\"public.orders\"]");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &format!("port = {}", stack().pg_port()),
        &format!("port = {port}"),
    );
    std::fs::write(&file, text).unwrap();
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    // One line for the database (the broker and the registry are checked on their own).
    let database: Vec<&str> = run
        .problems()
        .into_iter()
        .filter(|p| !p.contains("schema registry"))
        .collect();
    assert_eq!(database.len(), 1, "{run:?}");
    let line = database[0];
    assert!(
        line.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(line.contains("are [source] host and port right?"), "{line}");
}

#[test]
fn wrong_password_is_named_and_never_printed() {
    let db = TestDb::new(stack());
    let role = format!("pw_{}", db.name);
    db.psql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'right-one' IN ROLE password_auth"
    ));
    let file = db.connector(
        "pw",
        "password = \"${WALCAST_TEST_PW}\"",
        "[tables.\"public.orders\"]",
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("user = \"postgres\"", &format!("user = \"{role}\""));
    std::fs::write(&file, text).unwrap();

    let run = walcast(
        &["check", file.to_str().unwrap()],
        &[("WALCAST_TEST_PW", "wrong-one")],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("rejected the password of user {role}")),
        "{run:?}"
    );
    assert!(
        !run.stdout.contains("wrong-one") && !run.stderr.contains("wrong-one"),
        "{run:?}"
    );

    // with the right password (SCRAM), the user lacks REPLICATION and SELECT
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY)");
    let run = walcast(
        &["check", file.to_str().unwrap()],
        &[("WALCAST_TEST_PW", "right-one")],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let p = run.problems().join("\n");
    assert!(
        p.contains(&format!("user {role} lacks the REPLICATION attribute")),
        "{p}"
    );
    assert!(p.contains("lacks SELECT on it"), "{p}");
    db.psql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[test]
fn a_slot_of_another_plugin_or_in_use_is_a_problem() {
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    db.psql("SELECT pg_create_logical_replication_slot('walcast_slotted', 'test_decoding')");
    let file = db.connector("slotted", "", "[tables.\"public.orders\"]");
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.problems().iter().any(|p| p.contains(
            "slot walcast_slotted exists but is a logical slot with plugin test_decoding"
        )),
        "{run:?}"
    );
}

#[test]
fn a_filter_outside_the_replica_identity_is_a_problem() {
    let db = TestDb::new(stack());
    db.psql(ORDERS);
    let file = db.connector(
        "rowfilter",
        "",
        "[tables.\"public.orders\"]\nfilter = \"status <> 'draft'\"",
    );
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.problems().iter().any(|p| p.contains("table public.orders: PostgreSQL would reject every UPDATE and DELETE on it once published")
            && p.contains("REPLICA IDENTITY FULL")),
        "{run:?}"
    );
    // The probe left nothing behind.
    assert_eq!(db.psql("SELECT count(*) FROM pg_publication"), "0");
    db.psql("ALTER TABLE public.orders REPLICA IDENTITY FULL");
    let run = walcast(&["check", file.to_str().unwrap()], &[]);
    assert!(
        run.problems()
            .iter()
            .all(|p| !p.contains("table public.orders")),
        "{run:?}"
    );
}
