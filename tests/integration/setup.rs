//! `walcast setup`: idempotent migrations, publication sync and grants.

use crate::common::{stack, walcast, TestDb};

#[test]
fn setup_twice_is_idempotent_and_builds_the_demo() {
    let db = TestDb::new(stack());
    let file = db.connector("demo", "", "[tables.\"inventory.*\"]");
    let path = file.to_str().unwrap();

    let first = walcast(&["setup", path, "--demo"], &[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(
        first.lines(),
        [
            "demo: applied migration 0001_walcast_schema.sql",
            "demo: applied migration 0002_connector_state.sql",
            "demo: applied migration demo/0001_inventory.sql",
            "demo: created publication walcast_demo for 3 table(s)",
        ]
    );
    let second = walcast(&["setup", path, "--demo"], &[]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert_eq!(
        second.lines(),
        [
            "demo: migration 0001_walcast_schema.sql already applied",
            "demo: migration 0002_connector_state.sql already applied",
            "demo: migration demo/0001_inventory.sql already applied",
            "demo: publication walcast_demo is up to date (3 table(s))",
        ]
    );
    assert_eq!(
        db.psql("SELECT count(*) FROM walcast.schema_migrations"),
        "3"
    );
    assert_eq!(
        db.psql("SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'walcast_demo'"),
        "inventory.customers,inventory.orders,inventory.products,walcast.signal",
        "the captured tables, and the signal table for incremental snapshots"
    );
    assert_eq!(db.psql("SELECT count(*) FROM inventory.orders"), "4");

    // A table added later joins the publication on the next setup.
    db.psql("CREATE TABLE inventory.shipments (id int PRIMARY KEY)");
    let third = walcast(&["setup", path], &[]);
    assert!(
        third
            .stdout
            .contains("updated publication walcast_demo to 4 table(s)"),
        "{third:?}"
    );
}

#[test]
fn a_changed_migration_is_refused() {
    let db = TestDb::new(stack());
    let file = db.connector("changed", "", "[tables.\"walcast.heartbeat\"]");
    let path = file.to_str().unwrap();
    assert_eq!(walcast(&["setup", path], &[]).code, Some(0));
    db.psql("UPDATE walcast.schema_migrations SET checksum = 'edited'");
    let run = walcast(&["setup", path], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("migration 0001_walcast_schema.sql was changed after it was applied"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_setup_grants_the_connector_user() {
    let (_registry_dir, registry) = crate::common::start_registry().await;
    let db = TestDb::new(stack());
    let user = format!("cdc_{}", db.name);
    db.psql(&format!("CREATE ROLE {user} LOGIN REPLICATION"));
    db.psql("CREATE TABLE public.orders (id int PRIMARY KEY, total numeric)");
    let file =
        db.connector_with_registry("granted", "", "[tables.\"public.orders\"]", &registry.url());
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("user = \"postgres\"", &format!("user = \"{user}\""));
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();

    // As itself, the user can't create the publication: check says so.
    let before = walcast(&["check", path], &[]);
    assert!(
        before
            .problems()
            .iter()
            .any(|p| p.contains("can't create it: it does not own public.orders")),
        "{before:?}"
    );

    let run = walcast(&["setup", path, "--admin-user", "postgres"], &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("granted {user} SELECT on 1 captured table(s)")),
        "{run:?}"
    );
    let after = walcast(&["check", path], &[]);
    assert_eq!(after.code, Some(0), "{after:?}");
    db.psql(&format!("DROP OWNED BY {user}; DROP ROLE {user}"));
    registry.shutdown().await.unwrap();
}

#[test]
fn column_lists_and_partition_roots_reach_the_publication() {
    let db = TestDb::new(stack());
    db.psql(
        "CREATE TABLE public.customers (id int PRIMARY KEY, email text, notes text, secret text)",
    );
    db.psql("CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)");
    db.psql("CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
    let file = db.connector(
        "lists",
        "",
        "[tables.\"public.*\"]\n[tables.\"public.customers\"]\nexclude_columns = [\"secret\", \"notes\"]",
    );
    let run = walcast(&["setup", file.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        db.psql("SELECT tablename || ':' || array_to_string(attnames, ',') FROM pg_publication_tables WHERE pubname = 'walcast_lists' AND schemaname <> 'walcast' ORDER BY 1"),
        "customers:id,email\nevents:id,at"
    );
    assert_eq!(
        db.psql("SELECT pubviaroot FROM pg_publication WHERE pubname = 'walcast_lists'"),
        "t"
    );
    // Running it again re-sets the list (it can't be compared) and changes nothing.
    let again = walcast(&["setup", file.to_str().unwrap()], &[]);
    assert!(
        again
            .stdout
            .contains("updated publication walcast_lists to 2 table(s)"),
        "{again:?}"
    );
}
