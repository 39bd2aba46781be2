//! Parsing and validation of connector files: the good file and each bad case.

use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
name = "shop"

[source]
dbname = "shop"
user = "walcast"

[kafka]
bootstrap_servers = "127.0.0.1:9092"

[registry]
url = "http://127.0.0.1:8081"

[tables."public.orders"]
"#;

fn parse(text: &str) -> Result<Connector, ConfigError> {
    parse_connector(Path::new("connectors/shop.toml"), text)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_file_gets_production_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.name, "shop");
    assert_eq!(c.source.host, "localhost");
    assert_eq!(c.source.port, 5432);
    assert_eq!(c.source.slot, "walcast_shop");
    assert_eq!(c.source.publication, "walcast_shop");
    assert_eq!(c.source.sslmode, SslMode::Prefer);
    assert_eq!(c.source.publication_mode, PublicationMode::Managed);
    assert_eq!(c.source.snapshot_mode, SnapshotMode::Initial);
    assert!(c.source.password.is_none());
    assert_eq!(c.kafka.topic_prefix, "shop");
    assert_eq!(c.kafka.partitions, None);
    assert_eq!(c.kafka.cleanup_policy, CleanupPolicy::Delete);
    assert_eq!(c.kafka.min_insync_replicas, None);
    assert_eq!(c.source.spool_dir, Path::new("walcast-spool/shop"));
    assert_eq!(c.source.spool_max_bytes, 10 << 30);
    assert_eq!(c.delivery.mode, DeliveryMode::ExactlyOnce);
    assert_eq!(c.delivery.shutdown_grace.as_secs(), 30);
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:8723");
    assert_eq!(c.tables.len(), 1);
    let t = &c.tables[0];
    assert_eq!(t.selector.to_string(), "public.orders");
    assert_eq!(t.columns, ColumnSelection::All);
    assert!(t.tombstones);
    assert_eq!((t.location.line, t.location.column), (14, 9));
}

#[test]
fn the_shipped_connectors_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // demo.toml reads the local stack's settings from the environment, with defaults.
    for name in ["example.toml", "demo.toml"] {
        let path = root.join("connectors").join(name);
        let c = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.tables.is_empty(), "{name}");
    }
}

#[test]
fn every_option_is_read() {
    std::env::set_var("WALCAST_TEST_SALT", "pepper");
    let c = parse(
        r#"
name = "shop-eu"
[source]
host = "db.internal"
port = "${WALCAST_TEST_UNSET_PORT:-6543}"
dbname = "shop"
user = "walcast"
password = "inline"
sslmode = "require"
slot = "shop_slot"
publication = "shop_pub"
publication_mode = "existing"
snapshot_mode = "never"
connect_timeout = "3s"
spool_dir = "/var/lib/walcast/spool"
spool_max_bytes = "2GiB"
[kafka]
bootstrap_servers = "k1:9092,k2:9092"
topic_prefix = "eu.shop"
partitions = 6
replication_factor = 3
min_insync_replicas = 2
cleanup_policy = "compact"
[kafka.producer]
"compression.type" = "zstd"
"linger.ms" = "20"
[registry]
url = "https://registry:8081"
username = "svc"
password = "pw"
[delivery]
mode = "transactional"
shutdown_grace = "10s"
[metrics]
enabled = false
listen = "127.0.0.1:9999"
[heartbeat]
interval = "5s"
action_query = "update walcast.heartbeat set ts = now()"
[tables."public.orders"]
columns = ["id", "total"]
filter = "total > 0"
snapshot_filter = "created > now() - interval '30 days'"
topic = "orders-v2"
tombstones = false
[tables."public.orders".mask]
total = { truncate = 3 }
[tables."public.customers"]
exclude_columns = ["notes"]
key = ["email"]
mask.email = { hash = "sha256", salt = "${WALCAST_TEST_SALT}" }
mask.phone = { fixed = "***" }
[tables."audit.*"]
exclude = ["audit.big_*"]
"#,
    )
    .unwrap();
    assert_eq!(c.source.slot, "shop_slot");
    assert_eq!(c.source.port, 6543);
    assert_eq!(c.source.password.as_ref().unwrap().expose(), "inline");
    assert_eq!(c.source.connect_timeout.as_secs(), 3);
    assert_eq!(c.kafka.partitions, Some(6));
    assert_eq!(c.kafka.replication_factor, Some(3));
    assert_eq!(c.kafka.min_insync_replicas, Some(2));
    assert_eq!(c.source.spool_dir, Path::new("/var/lib/walcast/spool"));
    assert_eq!(c.source.spool_max_bytes, 2 << 30);
    assert_eq!(c.kafka.producer["compression.type"].expose(), "zstd");
    assert_eq!(c.registry.username.as_deref(), Some("svc"));
    assert_eq!(c.delivery.mode, DeliveryMode::Transactional);
    assert!(!c.metrics.enabled);
    assert_eq!(c.heartbeat.interval.as_secs(), 5);
    // exact entries sort before patterns
    assert!(c.tables[0].selector.is_exact() && c.tables[1].selector.is_exact());
    let audit = &c.tables[2];
    assert!(audit.applies_to("audit", "log"));
    let orders = c
        .tables
        .iter()
        .find(|t| t.selector.to_string() == "public.orders")
        .unwrap();
    assert_eq!(
        orders.snapshot_condition().as_deref(),
        Some("(total > 0) AND (created > now() - interval '30 days')")
    );
    assert_eq!(audit.snapshot_condition(), None);
    assert!(!audit.applies_to("audit", "big_events"));
    let customers = c
        .tables
        .iter()
        .find(|t| t.selector.to_string() == "public.customers")
        .unwrap();
    assert_eq!(
        customers.columns,
        ColumnSelection::Exclude(vec!["notes".into()])
    );
    assert_eq!(customers.key, Some(vec!["email".into()]));
    match &customers.masks[0].mask {
        Mask::Hash { algorithm, salt } => {
            assert_eq!(*algorithm, HashAlgorithm::Sha256);
            assert_eq!(salt.expose(), "pepper");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(customers.masks[1].mask, Mask::Fixed("***".into()));
    // passwords never reach Debug output
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("inline") && !debug.contains("pepper"),
        "{debug}"
    );
}

#[test]
fn invalid_toml_points_at_the_line() {
    let e = error("name = \"x\"\n[source\n");
    assert!(e.starts_with("connectors/shop.toml:2:"), "{e}");
}

#[test]
fn unknown_key_is_an_error_with_position() {
    let text = MINIMAL.replace("user = \"walcast\"", "user = \"walcast\"\nhots = \"db\"");
    let e = error(&text);
    assert!(e.starts_with("connectors/shop.toml:7:1:"), "{e}");
    assert!(e.contains("unknown field `hots`"), "{e}");
    assert!(e.contains("`host`"), "lists the expected keys: {e}");
}

#[test]
fn wrong_type_says_what_was_expected() {
    let e = error(&MINIMAL.replace("dbname = \"shop\"", "dbname = \"shop\"\nport = true"));
    assert!(e.starts_with("connectors/shop.toml:6:8:"), "{e}");
    assert!(e.contains("integer"), "{e}");
    let e = error(&MINIMAL.replace("[source]", "[source]\nsslmode = \"always\""));
    assert!(
        e.contains("unknown variant `always`") && e.contains("verify-full"),
        "{e}"
    );
}

#[test]
fn missing_section_or_field_is_named() {
    let e = error(&MINIMAL.replace("[registry]\nurl = \"http://127.0.0.1:8081\"\n", ""));
    assert!(e.contains("missing field `registry`"), "{e}");
    let e = error(&MINIMAL.replace("user = \"walcast\"\n", ""));
    assert!(e.contains("missing field `user`"), "{e}");
}

#[test]
fn empty_table_list_is_an_error() {
    let e = error(&MINIMAL.replace("[tables.\"public.orders\"]\n", ""));
    assert!(e.contains("no tables to capture"), "{e}");
}

#[test]
fn env_interpolation_errors_name_the_variable_and_position() {
    let e = error(&MINIMAL.replace("user = \"walcast\"", "user = \"${WALCAST_TEST_NOT_SET}\""));
    assert!(e.starts_with("connectors/shop.toml:6:8:"), "{e}");
    assert!(e.contains("WALCAST_TEST_NOT_SET is not set"), "{e}");
    std::env::set_var("WALCAST_TEST_PORT", "15432");
    let c =
        parse(&MINIMAL.replace("[source]", "[source]\nport = \"${WALCAST_TEST_PORT}\"")).unwrap();
    assert_eq!(c.source.port, 15432);
    let e = error(&MINIMAL.replace("[source]", "[source]\nport = \"${WALCAST_TEST_PORT}0\""));
    assert!(e.contains("not a valid number"), "{e}");
}

#[test]
fn password_file_is_read_and_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
    let path = dir.path().join("c.toml");
    let text = MINIMAL.replace("[source]", "[source]\npassword_file = \"pw\"");
    let c = parse_connector(&path, &text).unwrap();
    assert_eq!(c.source.password.unwrap().expose(), "from-file");

    let both = MINIMAL.replace(
        "[source]",
        "[source]\npassword = \"x\"\npassword_file = \"pw\"",
    );
    let e = parse_connector(&path, &both).unwrap_err().to_string();
    assert!(e.contains("both password and password_file"), "{e}");

    let missing = MINIMAL.replace("[source]", "[source]\npassword_file = \"nope\"");
    let e = parse_connector(&path, &missing).unwrap_err().to_string();
    assert!(e.contains("cannot read [source] password_file"), "{e}");
}

#[test]
fn bad_values_are_explained() {
    let cases = [
        (
            "\nname = \"shop\"",
            "\nname = \"shop eu\"",
            "must be 1 to 48 characters",
        ),
        (
            "[source]",
            "[source]\nslot = \"Bad-Slot\"",
            "slot `Bad-Slot` must be",
        ),
        (
            "[source]",
            "[source]\nsslmode = \"verify-full\"",
            "needs sslrootcert",
        ),
        (
            "[kafka]",
            "[kafka]\npartitions = 0",
            "partitions must be at least 1",
        ),
        (
            "[kafka]",
            "[kafka]\ntopic_prefix = \"a b\"",
            "not a valid Kafka topic name",
        ),
        (
            "url = \"http://127.0.0.1:8081\"",
            "url = \"127.0.0.1:8081\"",
            "must start with http://",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"orders\"]",
            "has no schema",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\ncolumns = [\"a\"]\nexclude_columns = [\"b\"]",
            "not both",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nkey = []",
            "key = [] is empty",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nfilter = \"true); drop table x; --\"",
            "filter",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nsnapshot_filter = \"true) TO STDOUT; --\"",
            "snapshot_filter",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nexclude = [\"public.x\"]",
            "only makes sense on a pattern",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.*\"]\ntopic = \"all\"",
            "a pattern can't set one topic",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nmask.email = { hash = \"sha256\" }",
            "needs a salt",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nmask.email = { fixed = \"x\", truncate = 2 }",
            "exactly one of",
        ),
        (
            "[tables.\"public.orders\"]",
            "[tables.\"public.orders\"]\nmask.email = { hash = \"md5\", salt = \"s\" }",
            "use sha256 or sha512",
        ),
        (
            "[kafka]",
            "[kafka]\nproducer.\"enable.idempotence\" = \"false\"",
            "managed by walcast",
        ),
        (
            "[registry]",
            "[metrics]\nlisten = \"nowhere\"\n[registry]",
            "not an address:port",
        ),
        (
            "[registry]",
            "[heartbeat]\ninterval = \"10\"\n[registry]",
            "has no unit",
        ),
    ];
    for (from, to, expected) in cases {
        let text = MINIMAL.replace(from, to);
        assert_ne!(text, MINIMAL, "replacement {from} did not apply");
        let e = error(&text);
        assert!(e.contains(expected), "{to}: expected `{expected}` in: {e}");
        assert!(e.starts_with("connectors/shop.toml:"), "{e}");
    }
}

#[test]
fn folders_load_every_toml_and_reject_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_path(dir.path()).unwrap_err().to_string();
    assert!(e.contains("no *.toml connector files"), "{e}");

    std::fs::write(dir.path().join("a.toml"), MINIMAL).unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        MINIMAL.replace("\nname = \"shop\"", "\nname = \"shop2\""),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let all = load_path(dir.path()).unwrap();
    assert_eq!(
        all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["shop", "shop2"]
    );

    std::fs::write(dir.path().join("c.toml"), MINIMAL).unwrap();
    let e = load_path(dir.path()).unwrap_err().to_string();
    assert!(e.contains("name `shop` is also used by"), "{e}");
    std::fs::write(
        dir.path().join("c.toml"),
        MINIMAL
            .replace("\nname = \"shop\"", "\nname = \"shop3\"")
            .replace("[source]", "[source]\nslot = \"walcast_shop\""),
    )
    .unwrap();
    let e = load_path(dir.path()).unwrap_err().to_string();
    assert!(e.contains("slot `walcast_shop` is also used"), "{e}");
}

#[test]
fn missing_file_says_what_to_pass() {
    let e = load_path(Path::new("/nonexistent/x.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/nonexistent/x.toml: no such file; pass a connector .toml file or a folder of them"
    );
}

#[test]
fn events_default_to_debeziums_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.events, Events::default());
    assert_eq!(c.events.format, EventFormat::Avro);
    assert_eq!(c.events.codec, crate::codec::CodecOptions::default());
    assert_eq!(
        c.events.codec.unavailable_value_placeholder,
        b"__debezium_unavailable_value"
    );
    assert!(!c.events.provide_transaction_metadata);
    assert!(c.events.emit_key_change_headers);
}

#[test]
fn every_events_option_is_read() {
    let c = parse(&MINIMAL.replace(
        "[tables.",
        r#"[events]
format = "json_with_schema"
decimal_handling_mode = "string"
time_precision_mode = "connect"
binary_handling_mode = "base64-url-safe"
hstore_handling_mode = "map"
interval_handling_mode = "string"
unavailable_value_placeholder = "hex:00ff"
provide_transaction_metadata = true
emit_key_change_headers = false
[tables."#,
    ))
    .unwrap();
    let e = &c.events;
    assert_eq!(e.format, EventFormat::JsonWithSchema);
    assert_eq!(e.codec.decimal_handling, DecimalHandling::String);
    assert_eq!(e.codec.time_precision, TimePrecision::Connect);
    assert_eq!(e.codec.binary_handling, BinaryHandling::Base64UrlSafe);
    assert_eq!(e.codec.hstore_handling, HstoreHandling::Map);
    assert_eq!(e.codec.interval_handling, IntervalHandling::String);
    assert_eq!(e.codec.unavailable_value_placeholder, vec![0, 255]);
    assert!(e.provide_transaction_metadata);
    assert!(!e.emit_key_change_headers);

    // Each mode on its own, every name Debezium accepts.
    let one = |key: &str, value: &str| {
        parse(&MINIMAL.replace(
            "[tables.",
            &format!("[events]\n{key} = \"{value}\"\n[tables."),
        ))
        .unwrap_or_else(|e| panic!("{key} = {value}: {e}"))
        .events
    };
    assert_eq!(one("format", "json").format, EventFormat::Json);
    assert_eq!(one("format", "avro").format, EventFormat::Avro);
    for (value, want) in [
        ("precise", DecimalHandling::Precise),
        ("double", DecimalHandling::Double),
        ("string", DecimalHandling::String),
    ] {
        assert_eq!(
            one("decimal_handling_mode", value).codec.decimal_handling,
            want
        );
    }
    for (value, want) in [
        ("adaptive", TimePrecision::Adaptive),
        (
            "adaptive_time_microseconds",
            TimePrecision::AdaptiveTimeMicroseconds,
        ),
        ("connect", TimePrecision::Connect),
    ] {
        assert_eq!(one("time_precision_mode", value).codec.time_precision, want);
    }
    for (value, want) in [
        ("bytes", BinaryHandling::Bytes),
        ("base64", BinaryHandling::Base64),
        ("base64-url-safe", BinaryHandling::Base64UrlSafe),
        ("hex", BinaryHandling::Hex),
    ] {
        assert_eq!(
            one("binary_handling_mode", value).codec.binary_handling,
            want
        );
    }
    assert_eq!(
        one("hstore_handling_mode", "json").codec.hstore_handling,
        HstoreHandling::Json
    );
    assert_eq!(
        one("interval_handling_mode", "numeric")
            .codec
            .interval_handling,
        IntervalHandling::Numeric
    );
    assert_eq!(
        one("unavailable_value_placeholder", "n/a")
            .codec
            .unavailable_value_placeholder,
        b"n/a"
    );
    std::env::set_var("WALCAST_TEST_FORMAT", "json");
    assert_eq!(
        one("format", "${WALCAST_TEST_FORMAT}").format,
        EventFormat::Json
    );
}

#[test]
fn bad_events_values_point_at_the_value() {
    let at = |key: &str, value: &str| {
        // [events] starts on line 14 of MINIMAL with this replacement; the value is on 15.
        let text = MINIMAL.replace("[tables.", &format!("[events]\n{key} = {value}\n[tables."));
        error(&text)
    };
    let e = at("decimal_handling_mode", "\"exact\"");
    let col = "decimal_handling_mode = ".len() + 1;
    assert!(
        e.starts_with(&format!("connectors/shop.toml:15:{col}:")),
        "{e}"
    );
    assert!(
        e.contains("`exact` is not valid; use one of: precise, double, string"),
        "{e}"
    );
    let e = at("format", "\"protobuf\"");
    assert!(e.starts_with("connectors/shop.toml:15:10:"), "{e}");
    assert!(e.contains("avro, json, json_with_schema"), "{e}");
    for (key, value, expected) in [
        (
            "time_precision_mode",
            "\"nanos\"",
            "adaptive_time_microseconds",
        ),
        ("binary_handling_mode", "\"base32\"", "base64-url-safe"),
        ("hstore_handling_mode", "\"list\"", "json, map"),
        ("interval_handling_mode", "\"iso\"", "numeric, string"),
        (
            "unavailable_value_placeholder",
            "\"hex:abc\"",
            "even number of hex digits",
        ),
        ("provide_transaction_metadata", "\"yes\"", "invalid type"),
        ("emit_key_change_headers", "1", "invalid type"),
        ("decimal_handling_mode", "2", "invalid type"),
    ] {
        let e = at(key, value);
        assert!(e.starts_with("connectors/shop.toml:15:"), "{key}: {e}");
        assert!(e.contains(expected), "{key}: expected `{expected}` in {e}");
    }
    let e = at("decimal_mode", "\"double\"");
    assert!(e.starts_with("connectors/shop.toml:15:1:"), "{e}");
    assert!(
        e.contains("unknown field `decimal_mode`") && e.contains("decimal_handling_mode"),
        "{e}"
    );
}

#[test]
fn the_registry_is_optional_only_for_json_formats() {
    let without = MINIMAL.replace("[registry]\nurl = \"http://127.0.0.1:8081\"\n", "");
    let e = error(&without);
    assert!(
        e.contains("missing field `registry`") && e.contains("format = \"json\""),
        "{e}"
    );
    for format in ["json", "json_with_schema"] {
        let c = parse(&without.replace(
            "[tables.",
            &format!("[events]\nformat = \"{format}\"\n[tables."),
        ))
        .unwrap();
        assert!(!c.events.format.uses_registry());
        assert_eq!(c.registry.url, "");
    }
}

#[test]
fn subject_name_strategy_is_read() {
    let c = parse(&MINIMAL.replace(
        "url = \"http://127.0.0.1:8081\"",
        "url = \"http://127.0.0.1:8081\"\nsubject_name_strategy = \"record_name\"",
    ))
    .unwrap();
    assert_eq!(
        c.registry.subject_name_strategy,
        crate::registry::SubjectNameStrategy::RecordName
    );
    let e = error(&MINIMAL.replace(
        "url = \"http://127.0.0.1:8081\"",
        "url = \"http://127.0.0.1:8081\"\nsubject_name_strategy = \"by_magic\"",
    ));
    assert!(e.starts_with("connectors/shop.toml:"), "{e}");
}

#[test]
fn the_discarding_sink_and_chunk_size_are_read_and_checked() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.sink, SinkKind::Kafka);
    assert_eq!(c.source.snapshot_chunk_size, 1024);
    let c = parse(&format!("{MINIMAL}\n[sink]\nkind = \"discard\"\n")).unwrap();
    assert_eq!(c.sink, SinkKind::Discard);
    let e = error(&format!(
        "{MINIMAL}\n[sink]\nkind = \"discard\"\n[delivery]\nmode = \"transactional\"\n"
    ));
    assert!(e.contains("cannot be combined"), "{e}");
    let e = error(&MINIMAL.replace("[source]", "[source]\nsnapshot_chunk_size = 0"));
    assert!(e.contains("snapshot_chunk_size = 0 is out of range"), "{e}");
    assert_eq!(c.source.snapshot_workers, 2);
    let c = parse(&MINIMAL.replace("[source]", "[source]\nsnapshot_workers = 4")).unwrap();
    assert_eq!(c.source.snapshot_workers, 4);
    let e = error(&MINIMAL.replace("[source]", "[source]\nsnapshot_workers = 0"));
    assert!(e.contains("snapshot_workers = 0 is out of range"), "{e}");
}

#[test]
fn min_insync_replicas_must_fit_the_replication_factor() {
    let with = |extra: &str| {
        MINIMAL.replace(
            "bootstrap_servers = \"127.0.0.1:9092\"",
            &format!("bootstrap_servers = \"127.0.0.1:9092\"\n{extra}"),
        )
    };
    let e = error(&with("replication_factor = 2\nmin_insync_replicas = 3"));
    assert!(
        e.contains("min_insync_replicas (3) is larger than replication_factor (2)"),
        "{e}"
    );
    assert!(error(&with("min_insync_replicas = 0")).contains("at least 1"));
    assert!(parse(&with("min_insync_replicas = 2")).is_ok());
    let e = error(&MINIMAL.replace(
        "user = \"walcast\"",
        "user = \"walcast\"\nspool_max_bytes = \"10\"",
    ));
    assert!(e.contains("has no unit"), "{e}");
}

#[test]
fn a_folder_has_one_metrics_setting_and_conflicting_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let named = |name: &str| MINIMAL.replace("\nname = \"shop\"", &format!("\nname = \"{name}\""));
    std::fs::write(
        dir.path().join("a.toml"),
        format!("{}\n[metrics]\nlisten = \"0.0.0.0:9900\"\n", named("a")),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.toml"), named("b")).unwrap();
    let all = load_path(dir.path()).unwrap();
    assert!(
        all.iter()
            .all(|c| c.metrics.enabled && c.metrics.listen.to_string() == "0.0.0.0:9900"),
        "a file without [metrics] takes the folder's"
    );

    std::fs::write(
        dir.path().join("c.toml"),
        format!("{}\n[metrics]\nlisten = \"127.0.0.1:9901\"\n", named("c")),
    )
    .unwrap();
    let e = load_path(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("c.toml")
            && e.contains(
                "[metrics] listen = \"127.0.0.1:9901\" differs from listen = \"0.0.0.0:9900\" in"
            )
            && e.contains("a.toml"),
        "{e}"
    );

    std::fs::write(
        dir.path().join("c.toml"),
        format!("{}\n[metrics]\nenabled = false\n", named("c")),
    )
    .unwrap();
    let e = load_path(dir.path()).unwrap_err().to_string();
    assert!(e.contains("[metrics] enabled = false differs"), "{e}");

    std::fs::remove_file(dir.path().join("a.toml")).unwrap();
    let all = load_path(dir.path()).unwrap();
    assert!(
        all.iter().all(|c| !c.metrics.enabled),
        "c's enabled = false rules"
    );
}
