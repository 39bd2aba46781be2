//! TLS to PostgreSQL per sslmode, for both the SQL and the replication connection,
//! against a server given a certificate from a CA made here.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use walcast::config::{load_file, Source, SslMode};
use walcast::source::replication::ReplicationConnection;

use crate::common::{replica_level_postgres, stack, Stack, TestDb};

/// A CA and a server certificate for 127.0.0.1/localhost, made once with openssl;
/// the shared cluster is switched to ssl = on with it.
fn tls_enabled(stack: &'static Stack) -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = stack.dir.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=walcast test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        // The server runs as the postgres user and wants its key private.
        let _ = Command::new("chown")
            .args(["postgres:postgres", "server.key", "server.pem"])
            .current_dir(&dir)
            .status();
        let _ = Command::new("chmod")
            .args(["600", "server.key"])
            .current_dir(&dir)
            .status();
        let _ = Command::new("chmod")
            .args(["755", "."])
            .current_dir(&dir)
            .status();
        for setting in [
            format!("ssl_cert_file = '{}/server.pem'", dir.display()),
            format!("ssl_key_file = '{}/server.key'", dir.display()),
            "ssl = on".to_owned(),
        ] {
            stack.psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
        }
        stack.psql("postgres", "SELECT pg_reload_conf()");
        std::thread::sleep(std::time::Duration::from_millis(300));
        dir
    })
}

fn source(db: &TestDb, mode: SslMode, ca: Option<&Path>, host: &str) -> Source {
    let file = db.connector("tls", "", "[tables.\"public.*\"]");
    let mut source = load_file(&file).unwrap().source;
    source.sslmode = mode;
    source.sslrootcert = ca.map(Path::to_owned);
    source.host = host.to_owned();
    source
}

async fn both(source: &Source) -> Result<(), String> {
    let client = walcast::postgres::connect(source, None)
        .await
        .map_err(|e| e.to_string())?;
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    assert!(ssl, "the SQL connection is encrypted");
    let mut conn = ReplicationConnection::connect(source)
        .await
        .map_err(|e| e.to_string())?;
    conn.identify_system().await.map_err(|e| e.to_string())?;
    // The replication connection is encrypted too, as the server sees it.
    assert!(conn.encrypted());
    let pid = conn
        .simple_query("SELECT pg_backend_pid()")
        .await
        .map_err(|e| e.to_string())?;
    let pid: i32 = pid.first("pg_backend_pid").unwrap().parse().unwrap();
    let ssl: bool = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    assert!(ssl, "the replication connection is encrypted");
    conn.stop().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn every_sslmode_behaves_like_libpq() {
    let dir = tls_enabled(stack());
    let db = TestDb::new(stack());
    let ca = dir.join("ca.pem");
    let other = dir.join("other.pem");

    both(&source(&db, SslMode::Require, None, "127.0.0.1"))
        .await
        .expect("require");
    both(&source(&db, SslMode::Prefer, None, "127.0.0.1"))
        .await
        .expect("prefer");
    both(&source(&db, SslMode::VerifyCa, Some(&ca), "127.0.0.1"))
        .await
        .expect("verify-ca");
    both(&source(&db, SslMode::VerifyFull, Some(&ca), "localhost"))
        .await
        .expect("verify-full");

    // verify-full checks the name: 127.000.000.001 reaches the same server, but the
    // certificate names localhost and 127.0.0.1, not it.
    let mismatch = both(&source(
        &db,
        SslMode::VerifyFull,
        Some(&ca),
        "127.000.000.001",
    ))
    .await
    .unwrap_err();
    assert!(
        mismatch.contains("sslrootcert") || mismatch.contains("certificate"),
        "{mismatch}"
    );
    let replication = ReplicationConnection::connect(&source(
        &db,
        SslMode::VerifyFull,
        Some(&ca),
        "127.000.000.001",
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        replication.contains("TLS handshake")
            && replication.to_lowercase().contains("hostname mismatch"),
        "{replication}"
    );

    let wrong_ca = both(&source(&db, SslMode::VerifyCa, Some(&other), "127.0.0.1"))
        .await
        .unwrap_err();
    assert!(
        wrong_ca.contains("certificate") || wrong_ca.contains("TLS"),
        "{wrong_ca}"
    );
    assert!(wrong_ca.contains("sslrootcert"), "{wrong_ca}");
}

#[tokio::test]
async fn tls_required_but_not_offered_is_a_clear_error() {
    let db = TestDb::new(replica_level_postgres()); // that cluster has ssl = off
    let source = source(&db, SslMode::Require, None, "127.0.0.1");
    let sql = walcast::postgres::connect(&source, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        sql.contains("does not offer TLS") && sql.contains("sslmode"),
        "{sql}"
    );
    let replication = ReplicationConnection::connect(&source)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        replication.contains("does not offer TLS") && replication.contains("sslmode"),
        "{replication}"
    );
    // prefer falls back to plain TCP
    let mut plain = source.clone();
    plain.sslmode = SslMode::Prefer;
    walcast::postgres::connect(&plain, None)
        .await
        .expect("prefer without TLS");
    ReplicationConnection::connect(&plain)
        .await
        .expect("prefer without TLS (replication)");
}

/// A login role of `group` (a pg_hba.conf group role of the local stack) with
/// `password`, allowed to replicate.
fn login_role(db: &TestDb, group: &str, password: &str) -> String {
    let role = format!("{group}_{}", db.name);
    db.psql(&format!(
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}' IN ROLE {group}"
    ));
    role
}

/// A server that asks for the password in clear text (pg_hba method `password`) gets
/// it only over a connection whose server walcast verified, or when the connector
/// allows it; SCRAM over TLS is bound to the TLS session (SCRAM-SHA-256-PLUS).
#[tokio::test]
async fn cleartext_passwords_go_only_to_verified_servers_and_scram_binds_to_tls() {
    let dir = tls_enabled(stack());
    let db = TestDb::new(stack());
    let ca = dir.join("ca.pem");
    let clear = login_role(&db, "cleartext_auth", "pl4in");
    let with = |mode, ca: Option<&Path>, host: &str, user: &str, password: &str| {
        let mut s = source(&db, mode, ca, host);
        s.user = user.to_owned();
        s.password = Some(walcast::config::Secret::new(password));
        s
    };
    for mode in [SslMode::Disable, SslMode::Require] {
        let s = with(mode, None, "127.0.0.1", &clear, "pl4in");
        let sql = walcast::postgres::connect(&s, None)
            .await
            .unwrap_err()
            .to_string();
        let replication = ReplicationConnection::connect(&s)
            .await
            .unwrap_err()
            .to_string();
        for e in [&sql, &replication] {
            assert!(
                e.contains("for its password in clear text")
                    && e.contains("allow_cleartext_password = true")
                    && e.contains(mode.as_str()),
                "{mode:?}: {e}"
            );
        }
        let mut allowed = s.clone();
        allowed.allow_cleartext_password = true;
        walcast::postgres::connect(&allowed, None)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}, allowed: {e}"));
        ReplicationConnection::connect(&allowed)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}, allowed (replication): {e}"));
    }
    // A verified server may have it.
    let verified = with(SslMode::VerifyFull, Some(&ca), "localhost", &clear, "pl4in");
    both(&verified)
        .await
        .expect("verify-full with a cleartext password");

    let scram = login_role(&db, "password_auth", "scr4m");
    let conn =
        ReplicationConnection::connect(&with(SslMode::Require, None, "127.0.0.1", &scram, "scr4m"))
            .await
            .unwrap();
    assert!(conn.channel_bound(), "SCRAM-SHA-256-PLUS over TLS");
    conn.stop().await.unwrap();
    let conn =
        ReplicationConnection::connect(&with(SslMode::Disable, None, "127.0.0.1", &scram, "scr4m"))
            .await
            .unwrap();
    assert!(!conn.channel_bound() && !conn.encrypted());
    conn.stop().await.unwrap();
}
