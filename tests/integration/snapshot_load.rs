//! The initial snapshot under load: three tables (1,000,000 rows under a bigint key,
//! 100,000 under a composite text/int key, 150,000 without a key) read by three workers
//! in key and heap block ranges while a workload writes to all of them. Every row that
//! existed at the slot's consistent point arrives exactly once as `op = r`, with its
//! values as of that point, in key order (heap order without a key) and with Debezium's
//! markers; the topics, replayed per partition in offset order into maps by key, equal
//! the tables.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use walcast::checkpoint::Position;
use walcast::model::lsn::Lsn;

use crate::common::{field, start_walcast, text, WalcastProcess};
use crate::common::{stack, start_registry, stop_with_sigterm, Stack, TestDb};

/// Separates the fields of a row (and of a composite key) in their canonical text.
const SEP: &str = "\u{1f}";
/// A SQL NULL in canonical text (no value of these tables has this text).
const NULL: &str = "<null>";
const PARTITIONS: i32 = 3;
const BIG_ROWS: i64 = 1_000_000;
const PAIRS_ROWS: i64 = 100_000;
const HEAP_ROWS: i64 = 150_000;

/// How a column's value is compared: PostgreSQL's text of it, and the same text made
/// from the Avro value walcast wrote.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// smallint, int, bigint: Avro int / long.
    Int,
    /// text, jsonb: Avro string.
    Text,
    /// numeric(p, scale): Connect Decimal (unscaled two's complement bytes).
    Decimal(u32),
    /// timestamptz: io.debezium.time.ZonedTimestamp, `2024-01-01T00:00:01.234567Z`.
    Zoned,
    /// float8: Avro double (PostgreSQL's text parsed, both printed by Rust).
    Float,
    /// bool: Avro boolean; PostgreSQL's `::text` is `true` / `false`.
    Bool,
    /// date: io.debezium.time.Date, days since the epoch.
    Date,
}

/// A captured table: its columns in table order and which of them form the Kafka key
/// (none: null Kafka keys, and the whole row identifies a row).
struct Spec {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    key: &'static [usize],
}

const BIG: Spec = Spec {
    name: "big",
    columns: &[
        ("id", Kind::Int),
        ("customer", Kind::Int),
        ("sku", Kind::Text),
        ("qty", Kind::Int),
        ("price", Kind::Decimal(2)),
        ("status", Kind::Text),
        ("created", Kind::Zoned),
        ("weight", Kind::Float),
        ("active", Kind::Bool),
        ("shipped", Kind::Date),
        ("note", Kind::Text),
    ],
    key: &[0],
};

const PAIRS: Spec = Spec {
    name: "pairs",
    columns: &[
        ("a", Kind::Text),
        ("b", Kind::Int),
        ("v", Kind::Int),
        ("label", Kind::Text),
        ("amount", Kind::Decimal(3)),
        ("flag", Kind::Bool),
    ],
    key: &[0, 1],
};

/// No primary key, REPLICA IDENTITY FULL: null Kafka keys (as Debezium), rows told apart
/// by all their columns.
const HEAP: Spec = Spec {
    name: "heap",
    columns: &[
        ("g", Kind::Int),
        ("tag", Kind::Text),
        ("score", Kind::Float),
        ("at", Kind::Zoned),
        ("doc", Kind::Text),
    ],
    key: &[],
};

const SPECS: [&Spec; 3] = [&BIG, &PAIRS, &HEAP];

/// A row of `big` made from `g` (its id); negative and new ids use it too.
const BIG_ROW: &str = r#"g, g % 1000, 'sku-' || (g % 5000), 1 + g % 7,
    ((g * 37) % 2000000 - 1000000) / 100.0,
    CASE WHEN g % 11 = 0 THEN NULL ELSE (ARRAY['new', 'paid', 'shipped'])[1 + g % 3] END,
    timestamptz '2024-01-01 00:00:00+00' + g * interval '1.234567 second', g / 7.0, g % 2 = 0,
    date '2000-01-01' + (g % 10000)::int,
    CASE WHEN g % 997 = 0 THEN E'tab\there\nnew line, back\\slash, «ünï» ' || g ELSE 'note ' || g END"#;

/// A row of `pairs` made from `g`: keys 'k0'..'k24999' × 0..3, so text order is not
/// numeric order ('k10' < 'k9').
const PAIRS_ROW: &str =
    "'k' || (g % 25000), g / 25000, g, 'p' || g, (g % 100000) / 1000.0 - 50, g % 3 = 0";

const HEAP_ROW: &str = r#"g, 'tag-' || (g % 97), g / 3.0,
    timestamptz '2025-06-01 12:00:00+02' + g * interval '1 minute',
    jsonb_build_object('g', g, 'even', g % 2 = 0, 'tags', jsonb_build_array('x', g % 5))"#;

impl Spec {
    /// `SELECT` of every column as canonical text (NULL as [`NULL`]).
    fn select(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, kind)| {
                let text = match kind {
                    Kind::Zoned => {
                        format!("to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
                    }
                    Kind::Date => format!("({name} - date '1970-01-01')::text"),
                    _ => format!("{name}::text"),
                };
                format!("coalesce({text}, '{NULL}')")
            })
            .collect();
        format!("SELECT {} FROM public.{}", columns.join(", "), self.name)
    }

    /// A row's canonical text from PostgreSQL's fields (floats normalised).
    fn pg_row(&self, fields: &[String]) -> String {
        assert_eq!(fields.len(), self.columns.len(), "{fields:?}");
        let texts: Vec<String> = fields
            .iter()
            .zip(self.columns)
            .map(|(f, (name, kind))| match kind {
                Kind::Float if f != NULL => f
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{name} = {f}: {e}"))
                    .to_string(),
                _ => f.clone(),
            })
            .collect();
        texts.join(SEP)
    }

    fn pg_key(&self, fields: &[String]) -> String {
        if self.key.is_empty() {
            return self.pg_row(fields);
        }
        let texts: Vec<&str> = self.key.iter().map(|&i| fields[i].as_str()).collect();
        texts.join(SEP)
    }

    /// The canonical text of `columns` of an Avro record (a row or a Kafka key).
    fn avro_text(&self, record: &Avro, columns: &[usize]) -> String {
        let texts: Vec<String> = columns
            .iter()
            .map(|&i| {
                let (name, kind) = self.columns[i];
                let value = field(record, name)
                    .unwrap_or_else(|| panic!("{}: no field {name} in {record:?}", self.name));
                avro_value_text(value, kind)
            })
            .collect();
        texts.join(SEP)
    }

    fn all_columns(&self) -> Vec<usize> {
        (0..self.columns.len()).collect()
    }
}

fn avro_value_text(v: &Avro, kind: Kind) -> String {
    match (v, kind) {
        (Avro::Union(_, inner), _) => avro_value_text(inner, kind),
        (Avro::Null, _) => NULL.to_owned(),
        (Avro::Int(i) | Avro::Date(i), Kind::Int | Kind::Date) => i.to_string(),
        (Avro::Long(i), Kind::Int) => i.to_string(),
        (Avro::String(s), Kind::Text | Kind::Zoned) => s.clone(),
        (Avro::Boolean(b), Kind::Bool) => b.to_string(),
        (Avro::Double(f), Kind::Float) => f.to_string(),
        (Avro::Decimal(d), Kind::Decimal(scale)) => {
            decimal_text(&Vec::<u8>::try_from(d).expect("decimal bytes"), scale)
        }
        (Avro::Bytes(b), Kind::Decimal(scale)) => decimal_text(b, scale),
        (other, kind) => panic!("unexpected Avro value {other:?} for a {kind:?} column"),
    }
}

/// A Connect Decimal (big-endian two's complement unscaled value) as numeric's text.
fn decimal_text(bytes: &[u8], scale: u32) -> String {
    assert!(!bytes.is_empty() && bytes.len() <= 16, "{bytes:?}");
    let mut unscaled: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        unscaled = (unscaled << 8) | i128::from(*b);
    }
    let digits = format!(
        "{:0width$}",
        unscaled.unsigned_abs(),
        width = scale as usize + 1
    );
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Runs `sql` with psql and returns its rows' fields (unit and record separators, so
/// values may hold tabs and newlines).
fn dump(stack: &Stack, dbname: &str, sql: &str) -> Vec<Vec<String>> {
    let bin = std::path::Path::new(stack.get("WALCAST_PG_BIN")).join("psql");
    let out = Command::new(bin)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-F", "\u{1f}", "-R", "\u{1e}"])
        .args(["-h", stack.get("WALCAST_PG_HOST")])
        .args(["-p", stack.get("WALCAST_PG_PORT")])
        .args(["-U", stack.get("WALCAST_PG_USER"), "-d", dbname])
        .args(["-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 from psql");
    text.strip_suffix('\n')
        .unwrap_or(&text)
        .split('\u{1e}')
        .filter(|r| !r.is_empty())
        .map(|r| r.split('\u{1f}').map(str::to_owned).collect())
        .collect()
}

/// A table's rows as (key, row) in canonical text, in the order of `order_by`.
fn table_rows(stack: &Stack, dbname: &str, spec: &Spec, order_by: &str) -> Vec<(String, String)> {
    dump(
        stack,
        dbname,
        &format!("{} ORDER BY {order_by}", spec.select()),
    )
    .iter()
    .map(|f| (spec.pg_key(f), spec.pg_row(f)))
    .collect()
}

/// Feeds `sql` to one psql session (the workload: many transactions in one process).
fn run_sql(env: &HashMap<String, String>, dbname: &str, sql: &str) {
    let bin = std::path::Path::new(&env["WALCAST_PG_BIN"]).join("psql");
    let mut child = Command::new(bin)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", &env["WALCAST_PG_HOST"], "-p", &env["WALCAST_PG_PORT"]])
        .args(["-U", &env["WALCAST_PG_USER"], "-d", dbname])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "workload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// About 300 transactions (and a few rolled back) across the key ranges of all three
/// tables: updates of single rows and of short ranges, deletes, new keys before the
/// first and after the last (open-ended ranges), key changes, inserts into `heap`.
fn workload() -> String {
    let mut sql = String::new();
    for i in 0..300i64 {
        sql.push_str("BEGIN;\n");
        let id = (i * 7919) % BIG_ROWS + 1;
        sql.push_str(&format!(
            "UPDATE big SET qty = qty + 1, status = 'w{i}', price = price + 0.25, note = note || ' u{i}', weight = weight * 1.5 WHERE id = {id};\n"
        ));
        if i % 3 == 0 {
            let from = (i * 104_729) % (BIG_ROWS - 10) + 1;
            sql.push_str(&format!(
                "UPDATE big SET customer = customer + 1, active = NOT active, created = created + interval '1 day' WHERE id BETWEEN {from} AND {};\n",
                from + 4
            ));
        }
        if i % 5 == 1 {
            sql.push_str(&format!(
                "DELETE FROM big WHERE id = {};\n",
                (i * 15_485_863) % BIG_ROWS + 1
            ));
        }
        if i % 4 == 2 {
            sql.push_str(&format!(
                "INSERT INTO big SELECT {BIG_ROW} FROM (VALUES ({}::bigint), ({}::bigint)) v(g);\n",
                BIG_ROWS + i,
                -i
            ));
        }
        if i % 50 == 7 {
            sql.push_str(&format!(
                "UPDATE big SET id = {} WHERE id = {};\n",
                3_000_000 + i,
                (i * 31_337) % BIG_ROWS + 1
            ));
        }
        sql.push_str(&format!(
            "UPDATE pairs SET v = v + 1, label = label || '+', amount = amount * 2 WHERE a = 'k{}';\n",
            (i * 7907) % 25_000
        ));
        if i % 5 == 3 {
            sql.push_str(&format!(
                "DELETE FROM pairs WHERE a = 'k{}' AND b = {};\n",
                (i * 4219) % 25_000,
                i % 4
            ));
        }
        if i % 4 == 0 {
            sql.push_str(&format!(
                "INSERT INTO pairs VALUES ('k{i}x', 7, {i}, 'new{i}', {i}.125, true);\n"
            ));
        }
        if i % 60 == 11 {
            sql.push_str(&format!(
                "UPDATE pairs SET b = b + 100 WHERE a = 'k{}' AND b = 2;\n",
                (i * 3613) % 25_000
            ));
        }
        let first = 200_000 + i * 3;
        let last = if i % 10 == 0 { first + 2 } else { first };
        sql.push_str(&format!(
            "INSERT INTO heap SELECT {HEAP_ROW} FROM generate_series({first}, {last}) g;\n"
        ));
        sql.push_str("COMMIT;\n");
        if i % 25 == 5 {
            // Never committed: must not show.
            sql.push_str(&format!(
                "BEGIN; DELETE FROM big WHERE id BETWEEN {0} AND {0} + 100; DELETE FROM pairs WHERE b = 1; INSERT INTO heap SELECT {HEAP_ROW} FROM generate_series(900000, 900010) g; ROLLBACK;\n",
                (i * 6607) % (BIG_ROWS - 200) + 1
            ));
        }
        if i % 10 == 9 {
            sql.push_str("SELECT pg_sleep(0.25);\n");
        }
    }
    sql
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Create,
    Update,
    Delete,
    Tombstone,
}

/// A record as fetched: bytes and the headers this test reads.
struct Raw {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    position: Position,
    snapshot_key: Option<String>,
}

/// A record decoded: its key and row in canonical text.
#[derive(Debug)]
struct Rec {
    offset: i64,
    position: Position,
    snapshot_key: Option<String>,
    /// The Kafka key's columns (keyless tables: the row's).
    key: String,
    op: Op,
    /// `source.snapshot` (empty for tombstones).
    marker: String,
    /// `after` for r, c, u.
    row: Option<String>,
}

/// A nullable Avro value unless it is null.
fn present(v: Option<&Avro>) -> Option<&Avro> {
    match v? {
        Avro::Null => None,
        Avro::Union(_, inner) if **inner == Avro::Null => None,
        other => Some(other),
    }
}

fn schema_id(bytes: &[u8]) -> u32 {
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
}

fn decode(spec: &Spec, schemas: &HashMap<u32, apache_avro::Schema>, raw: Raw) -> Rec {
    let avro = |bytes: &[u8]| {
        apache_avro::from_avro_datum(&schemas[&schema_id(bytes)], &mut &bytes[5..], None)
            .expect("decodes with the registered schema")
    };
    let key = match &raw.key {
        Some(bytes) => spec.avro_text(&avro(bytes), spec.key),
        None => {
            assert!(spec.key.is_empty(), "{}: a record without a key", spec.name);
            let value = avro(raw.value.as_deref().expect("a keyless tombstone"));
            let row = present(field(&value, "after"))
                .or_else(|| present(field(&value, "before")))
                .expect("after or before");
            spec.avro_text(row, &spec.all_columns())
        }
    };
    let (op, marker, row) = match &raw.value {
        None => (Op::Tombstone, String::new(), None),
        Some(payload) => {
            let value = avro(payload);
            let op = match text(field(&value, "op")).as_deref() {
                Some("r") => Op::Read,
                Some("c") => Op::Create,
                Some("u") => Op::Update,
                Some("d") => Op::Delete,
                other => panic!("{}: op {other:?}", spec.name),
            };
            let marker = field(&value, "source")
                .and_then(|s| text(field(s, "snapshot")))
                .unwrap_or_default();
            let row = (op != Op::Delete).then(|| {
                spec.avro_text(field(&value, "after").expect("after"), &spec.all_columns())
            });
            (op, marker, row)
        }
    };
    Rec {
        offset: raw.offset,
        position: raw.position,
        snapshot_key: raw.snapshot_key,
        key,
        op,
        marker,
        row,
    }
}

/// Reads every partition of `topics` from the start until each topic holds its
/// `sentinels` records committed after `after` (the workload's last transaction, which
/// touches keys on every partition), then up to the high watermarks read at that
/// moment. Returns [topic][partition] → records in offset order.
fn fetch(
    bootstrap: &str,
    topics: &[String],
    after: Lsn,
    sentinels: &[usize],
) -> Vec<Vec<Vec<Raw>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("snapshot-load-{}", topics[0]))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for p in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut out: Vec<Vec<Vec<Raw>>> = topics
        .iter()
        .map(|_| (0..PARTITIONS).map(|_| Vec::new()).collect())
        .collect();
    let mut seen = vec![0usize; topics.len()];
    let mut watermarks: Option<Vec<Vec<i64>>> = None;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        if let Some(high) = &watermarks {
            let done = out.iter().zip(high).all(|(parts, high)| {
                parts
                    .iter()
                    .zip(high)
                    .all(|(records, h)| records.last().map_or(0, |r| r.offset + 1) >= *h)
            });
            if done {
                return out;
            }
        } else if seen.iter().zip(sentinels).all(|(s, n)| s >= n) {
            watermarks = Some(
                topics
                    .iter()
                    .map(|topic| {
                        (0..PARTITIONS)
                            .map(|p| {
                                consumer
                                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                                    .unwrap()
                                    .1
                            })
                            .collect()
                    })
                    .collect(),
            );
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "the topics never held the workload's last transaction: {seen:?} of {sentinels:?} records, {} fetched",
            out.iter().flatten().map(Vec::len).sum::<usize>()
        );
        let m = match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => panic!("consume: {e}"),
            None => continue,
        };
        let t = topics.iter().position(|t| t == m.topic()).unwrap();
        let mut position = None;
        let mut snapshot_key = None;
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                let value = || String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                match h.key {
                    "walcast.position" => position = Some(value().parse::<Position>().unwrap()),
                    "walcast.snapshot.key" => snapshot_key = Some(value()),
                    _ => {}
                }
            }
        }
        let position = position.expect("a walcast.position header");
        if position.commit_lsn > after && m.payload().is_some() {
            seen[t] += 1;
        }
        let records = &mut out[t][m.partition() as usize];
        if let Some(previous) = records.last() {
            assert!(m.offset() > previous.offset, "offsets go forward");
        }
        records.push(Raw {
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            position,
            snapshot_key,
        });
    }
}

/// walcast, killed if the test fails before stopping it.
struct Running(Option<WalcastProcess>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn first_difference(got: &[(String, String)], want: &[(String, String)]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "{} vs {} rows; first difference at {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    )
}

fn map_difference(got: &HashMap<String, String>, want: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push(format!("missing {k:?} = {v:?}")),
            Some(g) if g != v => out.push(format!("{k:?}: got {g:?}, want {v:?}")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            out.push(format!("extra {k:?} = {v:?}"));
        }
    }
    out.sort();
    out.truncate(8);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_snapshot_under_writes_emits_each_row_once_and_replays_to_the_tables() {
    let started = Instant::now();
    let lap = |what: &str| {
        eprintln!(
            "[snapshot_load] {:>6.1} s  {what}",
            started.elapsed().as_secs_f64()
        )
    };
    let stack = stack();
    let (_registry_dir, registry) = start_registry().await;
    let db = TestDb::new(stack);
    db.psql(&format!(
        "CREATE TABLE public.big (id bigint PRIMARY KEY, customer int NOT NULL, sku text NOT NULL,
            qty smallint NOT NULL, price numeric(12,2), status text, created timestamptz NOT NULL,
            weight float8, active bool NOT NULL, shipped date, note text);
         INSERT INTO big SELECT {BIG_ROW} FROM generate_series(1, {BIG_ROWS}) g;
         CREATE TABLE public.pairs (a text, b int, v bigint NOT NULL, label text, amount numeric(10,3),
            flag bool, PRIMARY KEY (a, b));
         INSERT INTO pairs SELECT {PAIRS_ROW} FROM generate_series(0, {}) g;
         CREATE TABLE public.heap (g int NOT NULL, tag text, score float8, at timestamptz, doc jsonb);
         ALTER TABLE heap REPLICA IDENTITY FULL;
         INSERT INTO heap SELECT {HEAP_ROW} FROM generate_series(1, {HEAP_ROWS}) g",
        PAIRS_ROWS - 1
    ));
    // Every table is large enough to be split into ranges.
    for spec in SPECS {
        let blocks: i64 = db
            .psql(&format!(
                "SELECT pg_relation_size('public.{}') / current_setting('block_size')::bigint",
                spec.name
            ))
            .parse()
            .unwrap();
        assert!(
            blocks >= 512,
            "{} has {blocks} blocks: too small to be split into ranges",
            spec.name
        );
    }
    // The rows at the consistent point (the workload starts after it): big and pairs in
    // key order (PostgreSQL's, for the text key), heap in block order.
    let initial: Vec<Vec<(String, String)>> = vec![
        table_rows(stack, &db.name, &BIG, "id"),
        table_rows(stack, &db.name, &PAIRS, "a, b"),
        table_rows(stack, &db.name, &HEAP, "ctid"),
    ];
    assert_eq!(initial[0].len() as i64, BIG_ROWS);
    assert_eq!(initial[1].len() as i64, PAIRS_ROWS);
    assert_eq!(initial[2].len() as i64, HEAP_ROWS);
    lap("tables loaded and read");

    let file = db.connector_with_registry(
        "snapload",
        "snapshot_workers = 3",
        "[tables.\"public.big\"]\n[tables.\"public.pairs\"]\n[tables.\"public.heap\"]",
        &registry.url(),
    );
    let text_file = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[kafka]", &format!("[kafka]\npartitions = {PARTITIONS}"));
    std::fs::write(&file, text_file).unwrap();
    let setup = crate::common::walcast(&["setup", file.to_str().unwrap()], &[]);
    assert_eq!(setup.code, Some(0), "{setup:?}");
    let log = db.dir.path().join("walcast.log");
    let mut running = Running(Some(start_walcast(&file, &log)));
    let walcast = running.0.as_mut().unwrap();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let state = || {
        db.psql("SELECT coalesce((SELECT snapshot_completed::text FROM walcast.connector_state WHERE connector = 'snapload'), 'none')")
    };

    // The state row is written once the slot exists (its consistent point fixed): from
    // then on, every write is a change after the snapshot.
    let deadline = Instant::now() + Duration::from_secs(60);
    while state() == "none" {
        assert!(
            Instant::now() < deadline,
            "the slot was never created\n{}",
            logs()
        );
        assert!(
            walcast.try_wait().unwrap().is_none(),
            "walcast exited\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lap("slot created; workload starts");
    let writer = {
        let env = stack.env.clone();
        let dbname = db.name.clone();
        std::thread::spawn(move || run_sql(&env, &dbname, &workload()))
    };

    // Until the snapshot is in Kafka: how many snapshot reads run at once.
    let mut most_copies = 0;
    let mut workload_done_during_snapshot = false;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = state();
        if s == "true" {
            break;
        }
        assert_eq!(s, "false");
        if writer.is_finished() && !workload_done_during_snapshot {
            workload_done_during_snapshot = true;
            lap("workload done");
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot never completed\n{}",
            logs()
        );
        assert!(
            walcast.try_wait().unwrap().is_none(),
            "walcast exited\n{}",
            logs()
        );
        let copies: usize = db
            .psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND state = 'active' AND query LIKE 'COPY (SELECT %'")
            .parse()
            .unwrap();
        most_copies = most_copies.max(copies);
        std::thread::sleep(Duration::from_millis(250));
    }
    lap("snapshot completed");
    writer.join().unwrap();
    assert!(
        workload_done_during_snapshot,
        "the workload outlasted the snapshot; it should run inside it"
    );

    // The last transaction touches keys on every partition of every topic: once its
    // records are in, so is everything before them.
    let after: Lsn = db
        .psql("SELECT pg_current_wal_insert_lsn()")
        .parse()
        .unwrap();
    let big_keys: Vec<String> = (0..30).map(|k| (12_345 + 33_000 * k).to_string()).collect();
    let pair_keys: Vec<String> = (0..30).map(|k| format!("'k{}'", 17 + 800 * k)).collect();
    let counts = db.psql(&format!(
        "WITH b AS (UPDATE big SET status = 'sentinel' WHERE id IN ({}) RETURNING 1),
              p AS (UPDATE pairs SET label = 'sentinel' WHERE b = 3 AND a IN ({}) RETURNING 1),
              h AS (INSERT INTO heap SELECT {HEAP_ROW} FROM generate_series(500001, 500030) g RETURNING 1)
         SELECT (SELECT count(*) FROM b) || ' ' || (SELECT count(*) FROM p) || ' ' || (SELECT count(*) FROM h)",
        big_keys.join(", "),
        pair_keys.join(", ")
    ));
    let sentinels: Vec<usize> = counts.split(' ').map(|c| c.parse().unwrap()).collect();
    assert!(sentinels.iter().all(|n| *n >= 20), "{sentinels:?}");

    // The tables as they end.
    let finals: Vec<Vec<(String, String)>> = SPECS
        .iter()
        .map(|spec| table_rows(stack, &db.name, spec, "1"))
        .collect();
    lap("final tables read");

    let topics: Vec<String> = SPECS
        .iter()
        .map(|s| format!("{}.public.{}", db.name, s.name))
        .collect();
    let raw = fetch(stack.kafka_bootstrap(), &topics, after, &sentinels);
    lap(&format!(
        "{} records fetched",
        raw.iter().flatten().map(Vec::len).sum::<usize>()
    ));
    let mut walcast = running.0.take().unwrap();
    let stopped = stop_with_sigterm(&mut walcast);
    let logs = logs();
    assert!(stopped.success(), "clean stop on SIGTERM\n{logs}");

    // Decode, a thread per partition.
    let mut schemas: HashMap<u32, apache_avro::Schema> = HashMap::new();
    let http = reqwest::Client::new();
    for r in raw.iter().flatten().flatten() {
        for bytes in [r.key.as_ref(), r.value.as_ref()].into_iter().flatten() {
            let id = schema_id(bytes);
            if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(id) {
                slot.insert(crate::common::registry_schema(&http, &registry.url(), id).await);
            }
        }
    }
    let mut by_partition: Vec<Vec<(usize, Vec<Raw>)>> =
        (0..PARTITIONS).map(|_| Vec::new()).collect();
    for (t, parts) in raw.into_iter().enumerate() {
        for (p, records) in parts.into_iter().enumerate() {
            by_partition[p].push((t, records));
        }
    }
    let schemas = &schemas;
    // records[table][partition]: decoded, in offset order.
    let mut records: Vec<Vec<Vec<Rec>>> = SPECS
        .iter()
        .map(|_| (0..PARTITIONS).map(|_| Vec::new()).collect())
        .collect();
    let decoded: Vec<Vec<(usize, Vec<Rec>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = by_partition
            .into_iter()
            .map(|tables| {
                scope.spawn(move || {
                    tables
                        .into_iter()
                        .map(|(t, raws)| {
                            let spec = SPECS[t];
                            (
                                t,
                                raws.into_iter().map(|r| decode(spec, schemas, r)).collect(),
                            )
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (p, tables) in decoded.into_iter().enumerate() {
        for (t, recs) in tables {
            records[t][p] = recs;
        }
    }
    lap("records decoded");
    for (t, spec) in SPECS.iter().enumerate() {
        let count = |op: Op| records[t].iter().flatten().filter(|r| r.op == op).count();
        eprintln!(
            "[snapshot_load] {}: r {} c {} u {} d {}, per partition {:?}",
            spec.name,
            count(Op::Read),
            count(Op::Create),
            count(Op::Update),
            count(Op::Delete),
            records[t].iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    eprintln!("[snapshot_load] at most {most_copies} snapshot reads ran at once");

    // walcast ran the snapshot with three workers.
    let started_line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "initial snapshot started")
        .unwrap_or_else(|| panic!("no \"initial snapshot started\" line\n{logs}"));
    assert_eq!(started_line["workers"], 3, "{started_line}");
    assert_eq!(started_line["tables"], 3, "{started_line}");
    assert_eq!(
        most_copies, 3,
        "snapshot reads (COPY) seen running at once, at most; want one per worker"
    );

    for (t, spec) in SPECS.iter().enumerate() {
        let name = spec.name;
        let mut partition_of: HashMap<&str, usize> = HashMap::new();
        let mut sentinel_partitions = [false; PARTITIONS as usize];
        for (p, recs) in records[t].iter().enumerate() {
            let mut streamed = false;
            for r in recs {
                // A key's records share a partition (what per-partition replay needs).
                let home = *partition_of.entry(r.key.as_str()).or_insert(p);
                assert_eq!(
                    home, p,
                    "{name}: key {:?} in partitions {home} and {p}",
                    r.key
                );
                if r.position.commit_lsn > after {
                    sentinel_partitions[p] = true;
                }
                match r.op {
                    Op::Read => assert!(
                        !streamed,
                        "{name} partition {p}: snapshot row {r:?} after a streamed change"
                    ),
                    Op::Tombstone => streamed = true,
                    _ => {
                        streamed = true;
                        assert_eq!(r.marker, "false", "{name}: a streamed change {r:?}");
                    }
                }
            }
        }
        for (p, recs) in records[t].iter().enumerate() {
            assert!(
                recs.is_empty() || sentinel_partitions[p],
                "{name}: the last transaction left partition {p} untouched; pick other keys"
            );
        }

        // Snapshot reads: the rows at the consistent point, each once, with the values it
        // had then, in the order walcast emitted them (the position index).
        let mut reads: Vec<&Rec> = records[t]
            .iter()
            .flatten()
            .filter(|r| r.op == Op::Read)
            .collect();
        reads.sort_by_key(|r| r.position);
        let mut per_key: HashMap<&str, usize> = HashMap::new();
        for r in &reads {
            *per_key.entry(r.key.as_str()).or_default() += 1;
        }
        let repeated: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            repeated.is_empty(),
            "{name}: rows emitted twice as snapshot reads, e.g. {repeated:?} ({} keys)",
            per_key.values().filter(|n| **n > 1).count()
        );
        let got: Vec<(String, String)> = reads
            .iter()
            .map(|r| (r.key.clone(), r.row.clone().unwrap()))
            .collect();
        assert!(
            got == initial[t],
            "{name}: the snapshot reads are not the rows at the consistent point in {} order: {}",
            if spec.key.is_empty() { "heap" } else { "key" },
            first_difference(&got, &initial[t])
        );
        if !spec.key.is_empty() {
            // The resume header: the row's key texts, on every snapshot row.
            for r in &reads {
                let header: Vec<String> = serde_json::from_str(
                    r.snapshot_key
                        .as_deref()
                        .unwrap_or_else(|| panic!("{name}: no walcast.snapshot.key on {r:?}")),
                )
                .unwrap();
                assert_eq!(header.join(SEP), r.key, "{name}: {r:?}");
            }
        }
        if spec.name == "big" {
            // Within each partition, in offset order, big's snapshot keys ascend.
            for (p, recs) in records[t].iter().enumerate() {
                let ids: Vec<(i64, i64)> = recs
                    .iter()
                    .filter(|r| r.op == Op::Read)
                    .map(|r| (r.offset, r.key.parse().unwrap()))
                    .collect();
                assert!(
                    ids.len() as i64 > BIG_ROWS / 5,
                    "partition {p} holds {} rows of big",
                    ids.len()
                );
                if let Some(w) = ids.windows(2).find(|w| w[0].1 >= w[1].1) {
                    panic!(
                        "big partition {p}: snapshot key {} (offset {}) after {} (offset {})",
                        w[1].1, w[1].0, w[0].1, w[0].0
                    );
                }
            }
        }

        // Replayed per partition in offset order, deletes removing the key, the topic
        // equals the table (heap: the same multiset of rows).
        let deletes = records[t]
            .iter()
            .flatten()
            .filter(|r| r.op == Op::Delete)
            .count();
        let tombstones = records[t]
            .iter()
            .flatten()
            .filter(|r| r.op == Op::Tombstone)
            .count();
        assert_eq!(tombstones, deletes, "{name}: a tombstone after each delete");
        if spec.key.is_empty() {
            // Keyless: the key is the whole row, so the topic is a multiset of rows.
            let mut got: HashMap<&str, i64> = HashMap::new();
            for r in records[t].iter().flatten() {
                match r.op {
                    Op::Tombstone => {}
                    Op::Delete => *got.entry(r.key.as_str()).or_default() -= 1,
                    _ => *got.entry(r.row.as_deref().unwrap()).or_default() += 1,
                }
            }
            got.retain(|_, n| *n != 0);
            let mut want: HashMap<&str, i64> = HashMap::new();
            for (_, row) in &finals[t] {
                *want.entry(row.as_str()).or_default() += 1;
            }
            let differing: Vec<_> = want
                .iter()
                .filter(|(r, n)| got.get(*r) != Some(n))
                .chain(got.iter().filter(|(r, _)| !want.contains_key(*r)))
                .take(5)
                .collect();
            assert!(
                differing.is_empty(),
                "heap: the replayed topic is not the table's multiset of rows ({} vs {} rows), e.g. {differing:?}",
                got.values().sum::<i64>(),
                finals[t].len()
            );
        } else {
            let mut replayed: HashMap<String, String> = HashMap::new();
            for r in records[t].iter().flatten() {
                match r.op {
                    Op::Tombstone => {}
                    Op::Delete => {
                        replayed.remove(&r.key);
                    }
                    _ => {
                        replayed.insert(r.key.clone(), r.row.clone().unwrap());
                    }
                }
            }
            let want: HashMap<String, String> = finals[t].iter().cloned().collect();
            assert_eq!(want.len(), finals[t].len(), "{name}: keys are unique");
            assert!(
                replayed == want,
                "{name}: the replayed topic is not the table ({} vs {} rows): {:#?}",
                replayed.len(),
                want.len(),
                map_difference(&replayed, &want)
            );
        }
    }

    // The markers, over all snapshot rows in emission order: one "first", one "last",
    // and at each change of table the last row of one and the first of the next.
    let mut reads: Vec<(Position, usize, &str)> = records
        .iter()
        .enumerate()
        .flat_map(|(t, parts)| {
            parts
                .iter()
                .flatten()
                .filter(|r| r.op == Op::Read)
                .map(move |r| (r.position, t, r.marker.as_str()))
        })
        .collect();
    reads.sort();
    let mut order: Vec<usize> = Vec::new();
    for (i, (_, t, marker)) in reads.iter().enumerate() {
        let new_table = order.last() != Some(t);
        if new_table {
            assert!(
                !order.contains(t),
                "table {} emitted in two runs (order {order:?})",
                SPECS[*t].name
            );
            order.push(*t);
        }
        let last_of_table = reads.get(i + 1).is_none_or(|next| next.1 != *t);
        let want = if i == 0 {
            "first"
        } else if i + 1 == reads.len() {
            "last"
        } else if last_of_table {
            "last_in_data_collection"
        } else if new_table {
            "first_in_data_collection"
        } else {
            "true"
        };
        assert_eq!(
            *marker,
            want,
            "snapshot row {i} of {} (table {})",
            reads.len(),
            SPECS[*t].name
        );
    }
    assert_eq!(order.len(), 3, "every table snapshotted: {order:?}");
    let markers = |m: &str| reads.iter().filter(|r| r.2 == m).count();
    assert_eq!(markers("first"), 1);
    assert_eq!(markers("last"), 1);
    assert_eq!(markers("first_in_data_collection"), 2);
    assert_eq!(markers("last_in_data_collection"), 2);
    assert_eq!(
        db.psql(
            "SELECT snapshot_completed FROM walcast.connector_state WHERE connector = 'snapload'"
        ),
        "t"
    );
    lap("checked");
    registry.shutdown().await.unwrap();
}
