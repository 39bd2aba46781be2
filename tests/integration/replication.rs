//! The replication reader against a real PostgreSQL: typed values for every type,
//! before images per replica identity, commit order, streamed large transactions,
//! and SCRAM/MD5 logins.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use walcast::config::{load_file, Source};
use walcast::model::change::{OldRow, RowOp, TxEvent};
use walcast::model::lsn::Lsn;
use walcast::model::value::{Array, DateValue, Decimal, Numeric, TimestampValue, Value};
use walcast::source::reader::{Reader, ReaderConfig};
use walcast::source::replication::ReplicationConnection;
use walcast::source::spool::{SpoolConfig, SpoolMetrics};

use crate::common::{stack, TestDb};

/// Streams `slot` until `commits` transactions (or non-transactional messages)
/// arrived, at most 30 s, then stops.
async fn capture(
    source: &Source,
    slot: &str,
    publication: &str,
    commits: usize,
    spool_limit: usize,
) -> Vec<TxEvent> {
    let metrics = SpoolMetrics {
        held: prometheus::IntGauge::new("held", "held").unwrap(),
        spilled: prometheus::IntCounter::new("spilled", "spilled").unwrap(),
    };
    capture_spooling(source, slot, publication, commits, spool_limit, &metrics).await
}

/// [`capture`], reporting what the spool held and spilled to `spool_metrics`.
async fn capture_spooling(
    source: &Source,
    slot: &str,
    publication: &str,
    commits: usize,
    spool_limit: usize,
    spool_metrics: &SpoolMetrics,
) -> Vec<TxEvent> {
    let catalog = walcast::postgres::connect(source, None)
        .await
        .expect("catalog connection");
    let (tx, mut rx) = mpsc::channel(1024);
    let (flushed_tx, flushed_rx) = watch::channel(Lsn::ZERO);
    let (stop_tx, stop_rx) = watch::channel(false);
    let spool_dir = tempfile::tempdir().unwrap();
    let config = ReaderConfig {
        connector: "replication-test".into(),
        slot: slot.into(),
        publication: publication.into(),
        start_lsn: Lsn::ZERO,
        status_interval: Duration::from_millis(200),
        spool: SpoolConfig {
            memory_limit: spool_limit,
            metrics: Some(spool_metrics.clone()),
            ..SpoolConfig::new(spool_dir.path().to_owned(), u64::MAX)
        },
    };
    let reader = Reader::start(source, catalog, &config, tx, flushed_rx)
        .await
        .expect("start replication");
    let task = tokio::spawn(reader.run(stop_rx));
    let mut events = Vec::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen < commits {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => {
                match &event {
                    TxEvent::Commit { end_lsn, .. } => {
                        seen += 1;
                        let _ = flushed_tx.send(*end_lsn);
                    }
                    TxEvent::Message {
                        transactional: false,
                        ..
                    } => seen += 1,
                    _ => {}
                }
                events.push(event);
            }
            Ok(None) => break,
            Err(_) => {
                panic!("only {seen} of {commits} transactions arrived; events so far: {events:#?}")
            }
        }
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("reader ended cleanly");
    events
}

fn source_for(db: &TestDb, name: &str) -> Source {
    let file = db.connector(name, "", "[tables.\"public.*\"]");
    load_file(&file).unwrap().source
}

fn changes(events: &[TxEvent]) -> Vec<&walcast::model::change::RowChange> {
    events
        .iter()
        .filter_map(|e| match e {
            TxEvent::Change(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn dec(negative: bool, digits: &str, scale: u32) -> Decimal {
    Decimal::new(negative, digits, scale).unwrap()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[tokio::test]
async fn every_type_is_decoded_to_its_typed_value() {
    let db = TestDb::new(stack());
    db.psql("CREATE EXTENSION hstore; CREATE EXTENSION citext");
    db.psql("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')");
    db.psql("CREATE DOMAIN posint AS integer CHECK (VALUE > 0)");
    db.psql(
        "CREATE TABLE all_types (
            id int PRIMARY KEY, b bool, i2 int2, i8 int8, f4 float4, f8 float8,
            n numeric(10,3), nu numeric, m money, t text, vc varchar(10), c char(4), ci citext,
            by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
            u uuid, j json, jb jsonb, x xml, ip inet, net cidr, mac macaddr, bt bit(4), vb varbit,
            ia int[], ta text[], ma int[][], e mood, ea mood[], dom posint, r int4range,
            pt point, bx box, tsv tsvector, hs hstore, o oid, lsn pg_lsn)",
    );
    db.psql("CREATE PUBLICATION p FOR TABLE all_types");
    let slot = format!("s_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ));
    db.psql(
        "INSERT INTO all_types VALUES (
            1, true, -32768, 9223372036854775807, 1.5, -2.25e-300,
            1234567.891, 123456789012345678901234567890.123456789, '-1234.56', 'héllo', 'v', 'ab', 'MiXeD',
            '\\x00ff10', '2026-01-16', '10:00:00.123456', '10:00:00+05:30', '2026-01-16 10:00:00.123456', '2026-01-16 10:00:00+02:30', '1 year 2 mons 3 days 04:05:06.789',
            'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"a\": [1, 2]}', '{\"b\": null, \"a\": 1}', '<x>1</x>', '192.168.0.1/24', '10.1.0.0/16', '08:00:2B:01:02:03', B'1010', B'101',
            '{1,NULL,3}', '{\"a,b\",\"c\\\"d\",NULL,\"NULL\"}', '{{1,2},{3,4}}', 'happy', '{sad,ok}', 7, '[1,5)',
            '(1.5,-2)', '(1,1),(0,0)', 'a fat cat', 'k=>v, n=>NULL', 42, '16/B374D848')",
    );
    db.psql(
        "INSERT INTO all_types (id, f4, f8, n, nu, d, ts, tstz, iv) VALUES
            (2, 'NaN', '-Infinity', 'NaN', 'Infinity', '0044-03-15 BC', 'infinity', '-infinity', '-1 days +02:03:00')",
    );
    db.psql("INSERT INTO all_types (id) VALUES (3)");

    let source = source_for(&db, "types");
    let events = capture(&source, &slot, "p", 3, 1 << 20).await;
    let rows: Vec<_> = changes(&events)
        .into_iter()
        .map(|c| c.new.clone().unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{events:#?}");
    let relation = &changes(&events)[0].relation;
    let col = |row: &[Value], name: &str| -> Value {
        let i = relation
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        row[i].clone()
    };
    let r1 = &rows[0];
    let expect = [
        ("id", Value::Int4(1)),
        ("b", Value::Bool(true)),
        ("i2", Value::Int2(-32768)),
        ("i8", Value::Int8(i64::MAX)),
        ("f4", Value::Float4(1.5)),
        ("f8", Value::Float8(-2.25e-300)),
        (
            "n",
            Value::Numeric(Numeric::Finite(dec(false, "1234567891", 3))),
        ),
        (
            "nu",
            Value::Numeric(Numeric::Finite(dec(
                false,
                "123456789012345678901234567890123456789",
                9,
            ))),
        ),
        ("m", Value::Money(dec(true, "123456", 2))),
        ("t", text("héllo")),
        ("vc", text("v")),
        ("c", text("ab  ")),
        ("ci", text("MiXeD")),
        ("by", Value::Bytea(vec![0x00, 0xff, 0x10])),
        ("d", Value::Date(DateValue::Finite(20469))),
        ("tm", Value::Time(36_000_123_456)),
        (
            "ttz",
            Value::TimeTz {
                micros: 36_000_000_000,
                offset_seconds: 19_800,
            },
        ),
        (
            "ts",
            Value::Timestamp(TimestampValue::Finite(1_768_557_600_123_456)),
        ),
        (
            "tstz",
            Value::TimestampTz(TimestampValue::Finite(1_768_548_600_000_000)),
        ),
        (
            "iv",
            Value::Interval {
                months: 14,
                days: 3,
                micros: 14_706_789_000,
            },
        ),
        (
            "u",
            Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
        ),
        ("j", Value::Json("{\"a\": [1, 2]}".into())),
        ("jb", Value::Json("{\"a\": 1, \"b\": null}".into())),
        ("x", Value::Xml("<x>1</x>".into())),
        ("ip", Value::Inet("192.168.0.1/24".into())),
        ("net", Value::Cidr("10.1.0.0/16".into())),
        ("mac", Value::MacAddr("08:00:2b:01:02:03".into())),
        (
            "bt",
            Value::Bits {
                len: 4,
                bytes: vec![0b1010_0000],
            },
        ),
        (
            "vb",
            Value::Bits {
                len: 3,
                bytes: vec![0b1010_0000],
            },
        ),
        (
            "ia",
            Value::Array(Array::from_elements(vec![
                Value::Int4(1),
                Value::Null,
                Value::Int4(3),
            ])),
        ),
        (
            "ta",
            Value::Array(Array::from_elements(vec![
                text("a,b"),
                text("c\"d"),
                Value::Null,
                text("NULL"),
            ])),
        ),
        (
            "ma",
            Value::Array(Array {
                dims: vec![2, 2],
                lower_bounds: vec![1, 1],
                elements: vec![
                    Value::Int4(1),
                    Value::Int4(2),
                    Value::Int4(3),
                    Value::Int4(4),
                ],
            }),
        ),
        ("e", Value::Enum("happy".into())),
        (
            "ea",
            Value::Array(Array::from_elements(vec![
                Value::Enum("sad".into()),
                Value::Enum("ok".into()),
            ])),
        ),
        ("dom", Value::Int4(7)),
        ("r", Value::Range("[1,5)".into())),
        ("pt", Value::Point { x: 1.5, y: -2.0 }),
        ("bx", Value::Geometric("(1,1),(0,0)".into())),
        ("tsv", Value::TextSearch("'a' 'cat' 'fat'".into())),
        (
            "hs",
            Value::Hstore(vec![("k".into(), Some("v".into())), ("n".into(), None)]),
        ),
        ("o", Value::Oid(42)),
        ("lsn", Value::PgLsn(0x16_B374_D848)),
    ];
    for (name, value) in &expect {
        assert_eq!(&col(r1, name), value, "column {name}");
    }
    let enum_column = relation.columns.iter().find(|c| c.name == "e").unwrap();
    assert_eq!(
        enum_column.type_info.enum_labels.as_deref(),
        Some(&["sad".to_owned(), "ok".to_owned(), "happy".to_owned()][..])
    );

    let r2 = &rows[1];
    assert!(matches!(col(r2, "f4"), Value::Float4(f) if f.is_nan()));
    assert_eq!(col(r2, "f8"), Value::Float8(f64::NEG_INFINITY));
    assert_eq!(col(r2, "n"), Value::Numeric(Numeric::NaN));
    assert_eq!(col(r2, "nu"), Value::Numeric(Numeric::PosInfinity));
    assert_eq!(col(r2, "d"), Value::Date(DateValue::Finite(-735_160)));
    assert_eq!(col(r2, "ts"), Value::Timestamp(TimestampValue::PosInfinity));
    assert_eq!(
        col(r2, "tstz"),
        Value::TimestampTz(TimestampValue::NegInfinity)
    );
    assert_eq!(
        col(r2, "iv"),
        Value::Interval {
            months: 0,
            days: -1,
            micros: 7_380_000_000
        }
    );

    let r3 = &rows[2];
    assert_eq!(col(r3, "id"), Value::Int4(3));
    assert!(relation
        .columns
        .iter()
        .skip(1)
        .all(|c| col(r3, &c.name) == Value::Null));
}

#[tokio::test]
async fn before_images_follow_the_replica_identity() {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE d (id int PRIMARY KEY, v text, big text)");
    db.psql("CREATE TABLE f (id int PRIMARY KEY, v text)");
    db.psql("ALTER TABLE f REPLICA IDENTITY FULL");
    db.psql("CREATE PUBLICATION p FOR TABLE d, f");
    let slot = format!("s_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ));
    db.psql("INSERT INTO d VALUES (1, 'a', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i))");
    db.psql("UPDATE d SET v = 'b' WHERE id = 1"); // big is unchanged and TOASTed: not sent
    db.psql("UPDATE d SET id = 2 WHERE id = 1"); // key change: old key sent
    db.psql("DELETE FROM d WHERE id = 2");
    db.psql("INSERT INTO f VALUES (1, 'x')");
    db.psql("UPDATE f SET v = 'y'");
    db.psql("DELETE FROM f");
    db.psql("TRUNCATE d, f");
    db.psql("BEGIN; SELECT pg_logical_emit_message(true, 'app', 'in-tx'); INSERT INTO f VALUES (9, 'z'); COMMIT");
    db.psql("SELECT pg_logical_emit_message(false, 'app', 'alone')");

    let source = source_for(&db, "identity");
    let events = capture(&source, &slot, "p", 10, 1 << 20).await;
    let c = changes(&events);
    assert_eq!(c.len(), 8, "{events:#?}");

    // DEFAULT identity: a plain update has no old row; the TOASTed column is "unchanged".
    assert_eq!((c[1].op, c[1].old.clone()), (RowOp::Update, None));
    assert_eq!(c[1].new.as_ref().unwrap()[2], Value::UnchangedToast);
    assert_eq!(c[1].new.as_ref().unwrap()[1], text("b"));
    // A key change sends the old key only.
    assert_eq!(
        c[2].old,
        Some(OldRow::Key(vec![Value::Int4(1), Value::Null, Value::Null]))
    );
    assert_eq!(c[3].op, RowOp::Delete);
    assert_eq!(
        c[3].old,
        Some(OldRow::Key(vec![Value::Int4(2), Value::Null, Value::Null]))
    );
    // FULL identity: whole old rows.
    assert_eq!(
        c[5].old,
        Some(OldRow::Full(vec![Value::Int4(1), text("x")]))
    );
    assert_eq!(
        c[6].old,
        Some(OldRow::Full(vec![Value::Int4(1), text("y")]))
    );

    let truncate = events.iter().find_map(|e| match e {
        TxEvent::Truncate { relations, .. } => Some(
            relations
                .iter()
                .map(|r| r.table.clone())
                .collect::<Vec<_>>(),
        ),
        _ => None,
    });
    assert_eq!(truncate, Some(vec!["d".to_owned(), "f".to_owned()]));
    let messages: Vec<(bool, String)> = events
        .iter()
        .filter_map(|e| match e {
            TxEvent::Message {
                transactional,
                content,
                ..
            } => Some((
                *transactional,
                String::from_utf8_lossy(content).into_owned(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        vec![(true, "in-tx".to_owned()), (false, "alone".to_owned())]
    );
}

#[tokio::test]
async fn interleaved_transactions_arrive_in_commit_order() {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)");
    db.psql("CREATE PUBLICATION p FOR TABLE a, b");
    let slot = format!("s_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ));
    let source = source_for(&db, "order");
    let first = walcast::postgres::connect(&source, None).await.unwrap();
    let second = walcast::postgres::connect(&source, None).await.unwrap();
    first
        .batch_execute("BEGIN; INSERT INTO a VALUES (1)")
        .await
        .unwrap();
    second
        .batch_execute("BEGIN; INSERT INTO b VALUES (1); INSERT INTO a VALUES (2)")
        .await
        .unwrap();
    first
        .batch_execute("INSERT INTO b VALUES (2)")
        .await
        .unwrap();
    second.batch_execute("COMMIT").await.unwrap();
    first.batch_execute("COMMIT").await.unwrap();

    let events = capture(&source, &slot, "p", 2, 1 << 20).await;
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            TxEvent::Change(c) => Some(format!(
                "{}{:?}",
                c.relation.table,
                c.new.as_ref().unwrap()[0]
            )),
            TxEvent::Commit { .. } => Some("commit".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["bInt4(1)", "aInt4(2)", "commit", "aInt4(1)", "bInt4(2)", "commit"]
    );
    let lsns: Vec<Lsn> = events
        .iter()
        .filter_map(|e| match e {
            TxEvent::Begin { commit_lsn, .. } => Some(*commit_lsn),
            _ => None,
        })
        .collect();
    assert!(lsns[0] < lsns[1], "commit LSNs grow: {lsns:?}");
}

#[tokio::test]
async fn large_streamed_transactions_spill_and_keep_only_committed_work() {
    let db = TestDb::new(stack());
    // Make PostgreSQL stream in-progress transactions early (protocol 2+).
    db.psql(&format!(
        "ALTER DATABASE {} SET logical_decoding_work_mem = '64kB'",
        db.name
    ));
    db.psql("CREATE TABLE big (id int PRIMARY KEY, payload text)");
    db.psql("CREATE PUBLICATION p FOR TABLE big");
    let slot = format!("s_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ));
    db.psql("BEGIN; INSERT INTO big SELECT i, repeat('x', 50) FROM generate_series(1, 20000) i; ROLLBACK");
    db.psql(
        "BEGIN;
         INSERT INTO big SELECT i, repeat('x', 50) FROM generate_series(1, 30000) i;
         SAVEPOINT sp;
         INSERT INTO big SELECT i, 'rolled back' FROM generate_series(30001, 40000) i;
         ROLLBACK TO SAVEPOINT sp;
         INSERT INTO big SELECT i, 'kept' FROM generate_series(40001, 45000) i;
         COMMIT",
    );
    db.psql("INSERT INTO big VALUES (0, 'after')");

    let source = source_for(&db, "streamed");
    // A 32 kB in-memory limit forces the spool to disk.
    let spool = SpoolMetrics {
        held: prometheus::IntGauge::new("held", "held").unwrap(),
        spilled: prometheus::IntCounter::new("spilled", "spilled").unwrap(),
    };
    let events = capture_spooling(&source, &slot, "p", 2, 32 * 1024, &spool).await;
    // PostgreSQL streamed it, and the spool really went to disk (at least the 30,000
    // kept rows' records, about 70 bytes each) and let go of it at the commit.
    assert!(
        spool.spilled.get() > 30_000 * 70,
        "spilled {} bytes",
        spool.spilled.get()
    );
    assert_eq!(spool.held.get(), 0);
    let ids: Vec<i32> = changes(&events)
        .iter()
        .map(|c| match c.new.as_ref().unwrap()[0] {
            Value::Int4(i) => i,
            ref other => panic!("{other:?}"),
        })
        .collect();
    let mut expected: Vec<i32> = (1..=30000).chain(40001..=45000).collect();
    expected.push(0);
    assert_eq!(ids.len(), expected.len());
    assert_eq!(ids, expected, "only committed rows, in order, none twice");
}

#[tokio::test]
async fn scram_and_md5_logins_stream() {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE t (id int PRIMARY KEY)");
    db.psql("CREATE PUBLICATION p FOR TABLE t");
    let scram_user = format!("scram_{}", db.name);
    let md5_user = format!("md5_{}", db.name);
    db.psql(&format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE {scram_user} LOGIN REPLICATION PASSWORD 's3cret' IN ROLE password_auth"));
    db.psql(&format!("SET password_encryption = 'md5'; CREATE ROLE {md5_user} LOGIN REPLICATION PASSWORD 'm5pass' IN ROLE md5_auth"));
    let scram_slot = format!("scram_{}", db.name);
    let md5_slot = format!("md5_{}", db.name);
    for (user, password, slot) in [
        (&scram_user, "s3cret", &scram_slot),
        (&md5_user, "m5pass", &md5_slot),
    ] {
        let mut source = source_for(&db, user);
        source.user = user.clone();
        source.password = Some(walcast::config::Secret::new(password));
        let mut conn = ReplicationConnection::connect(&source)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let identity = conn.identify_system().await.unwrap();
        assert_eq!(identity.dbname.as_deref(), Some(db.name.as_str()));
        conn.create_slot(slot, false, false).await.unwrap();
        conn.stop().await.unwrap();

        source.password = Some(walcast::config::Secret::new("wrong"));
        let err = ReplicationConnection::connect(&source)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("rejected the password of user {user}")) || err.contains("28P01"),
            "{err}"
        );
    }
    db.psql("INSERT INTO t VALUES (1)");
    let mut source = source_for(&db, "scram");
    source.user = scram_user.clone();
    source.password = Some(walcast::config::Secret::new("s3cret"));
    let events = capture(&source, &scram_slot, "p", 1, 1 << 20).await;
    assert_eq!(changes(&events).len(), 1);
    db.psql(&format!("DROP ROLE {scram_user}; DROP ROLE {md5_user}"));
}

#[tokio::test]
async fn a_lost_connection_reconnects_and_loses_nothing() {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE t (id int PRIMARY KEY)");
    db.psql("CREATE PUBLICATION p FOR TABLE t");
    let slot = format!("s_{}", db.name);
    db.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ));
    let source = source_for(&db, "reconnect");
    let config = ReaderConfig {
        connector: "replication-test".into(),
        slot: slot.clone(),
        publication: "p".into(),
        start_lsn: Lsn::ZERO,
        status_interval: Duration::from_millis(100),
        spool: SpoolConfig::new(std::env::temp_dir(), u64::MAX),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (flushed_tx, flushed_rx) = watch::channel(Lsn::ZERO);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = {
        let source = source.clone();
        tokio::spawn(async move {
            walcast::source::reader::stream_with_reconnect(
                &source, &config, tx, flushed_rx, stop_rx,
            )
            .await
        })
    };
    let mut seen = Vec::new();
    db.psql("INSERT INTO t VALUES (1)");
    let end = next_commit(&mut rx, &mut seen).await;
    flushed_tx.send(end).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the status update carries it
    db.psql(&format!("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}'"));
    db.psql("INSERT INTO t VALUES (2)");
    next_commit(&mut rx, &mut seen).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("clean stop");
    assert_eq!(
        seen,
        ["Int4(1)", "restarted", "Int4(2)"],
        "row 1 was confirmed, so only row 2 comes after the restart"
    );
}

#[tokio::test]
async fn a_missing_slot_is_a_clear_permanent_error() {
    let db = TestDb::new(stack());
    db.psql("CREATE TABLE t (id int PRIMARY KEY)");
    db.psql("CREATE PUBLICATION p FOR TABLE t");
    let source = source_for(&db, "noslot");
    let config = ReaderConfig {
        connector: "replication-test".into(),
        slot: "walcast_nowhere".into(),
        publication: "p".into(),
        start_lsn: Lsn::ZERO,
        status_interval: Duration::from_secs(1),
        spool: SpoolConfig::new(std::env::temp_dir(), u64::MAX),
    };
    let (tx, _rx) = mpsc::channel(8);
    let (_flushed_tx, flushed_rx) = watch::channel(Lsn::ZERO);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let err =
        walcast::source::reader::stream_with_reconnect(&source, &config, tx, flushed_rx, stop_rx)
            .await
            .unwrap_err();
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("replication slot \"walcast_nowhere\" does not exist")
            && text.contains("run walcast setup"),
        "{text}"
    );
}

/// Receives until the next Commit, noting changes and restarts; returns its end LSN.
async fn next_commit(rx: &mut mpsc::Receiver<TxEvent>, seen: &mut Vec<String>) -> Lsn {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("timed out")
            .expect("stream ended");
        match &event {
            TxEvent::Change(c) => seen.push(format!("{:?}", c.new.as_ref().unwrap()[0])),
            TxEvent::Restarted => seen.push("restarted".into()),
            TxEvent::Commit { end_lsn, .. } => return *end_lsn,
            _ => {}
        }
    }
}
