//! Opens a tokio-postgres connection from `[source]`, with TLS as libpq's `sslmode`
//! would do it, and turns failures into one line naming the cause and the fix.

use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::config::{Source, SslMode};

/// Why a connection could not be opened; its text is the line a user sees.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    message: String,
    /// True when retrying later may help (server down, network), false for
    /// configuration problems (password, database name, TLS setup).
    pub transient: bool,
}

impl ConnectError {
    pub(crate) fn new(message: String, transient: bool) -> Self {
        Self { message, transient }
    }

    pub(crate) fn config(message: String) -> Self {
        Self {
            message,
            transient: false,
        }
    }
}

/// Connects as `[source]` says (optionally as another user, for `setup --admin-user`),
/// spawning the connection task, and identifies itself as `walcast` in pg_stat_activity.
pub async fn connect(
    source: &Source,
    user_override: Option<(&str, Option<&str>)>,
) -> Result<Client, ConnectError> {
    if user_override.is_none() {
        refuse_cleartext_password(source).await?;
    }
    let mut config = Config::new();
    config
        .host(&source.host)
        .port(source.port)
        .dbname(&source.dbname)
        .application_name("walcast")
        .options(super::startup_options())
        .connect_timeout(source.connect_timeout);
    let user = match user_override {
        Some((user, password)) => {
            config.user(user);
            if let Some(p) = password {
                config.password(p);
            }
            user.to_owned()
        }
        None => {
            config.user(&source.user);
            if let Some(p) = &source.password {
                config.password(p.expose());
            }
            source.user.clone()
        }
    };
    let target = format!("{}:{}", source.host, source.port);
    let timeout = source.connect_timeout + Duration::from_secs(1);

    let connected = match source.sslmode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let fut = config.connect(NoTls);
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r.map(|(client, conn)| {
                    tokio::spawn(conn);
                    client
                }),
                Err(_) => return Err(timed_out(&target, source.connect_timeout)),
            }
        }
        mode => {
            config.ssl_mode(match mode {
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
            let tls = tls_connector(source)?;
            match tokio::time::timeout(timeout, config.connect(tls)).await {
                Ok(r) => r.map(|(client, conn)| {
                    tokio::spawn(conn);
                    client
                }),
                Err(_) => return Err(timed_out(&target, source.connect_timeout)),
            }
        }
    };
    connected.map_err(|e| explain(&e, source, &user, &target))
}

/// tokio-postgres sends the password in whatever form the server asks, clear text too.
/// Where that is not allowed (a password, a server walcast does not verify, no
/// `allow_cleartext_password`), the server's answer to a startup is looked at first on a
/// connection of walcast's own, once per server and user for the life of the process.
async fn refuse_cleartext_password(source: &Source) -> Result<(), ConnectError> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static CHECKED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if source.password.is_none()
        || source.sslmode.verifies_server()
        || source.allow_cleartext_password
    {
        return Ok(());
    }
    let key = format!("{}@{}", source.user, source.display_target());
    let known = |insert: bool| {
        CHECKED.lock().is_ok_and(|mut set| {
            let set = set.get_or_insert_with(HashSet::new);
            if insert {
                set.insert(key.clone());
            }
            set.contains(&key)
        })
    };
    if known(false) {
        return Ok(());
    }
    match crate::source::replication::ReplicationConnection::refuses_cleartext(source).await {
        Ok(()) => {
            known(true);
            Ok(())
        }
        Err(crate::source::replication::ReplicationError::Connect(e)) => Err(e),
        // Anything else (the server went away mid-probe): the real connection will say.
        Err(_) => Ok(()),
    }
}

fn timed_out(target: &str, after: Duration) -> ConnectError {
    ConnectError {
        message: format!(
            "cannot reach PostgreSQL at {target}: no answer within {}s; check [source] host and port, and that a firewall lets walcast through",
            after.as_secs()
        ),
        transient: true,
    }
}

/// TLS per sslmode: prefer/require encrypt without checking the certificate (libpq's
/// behaviour without a root certificate), verify-ca checks the chain against
/// `sslrootcert`, verify-full also checks the host name.
fn tls_connector(source: &Source) -> Result<MakeTlsConnector, ConnectError> {
    let mut connector = MakeTlsConnector::new(ssl_connector(source)?);
    let check_host = source.sslmode == SslMode::VerifyFull;
    connector.set_callback(move |conf, _domain| {
        conf.set_verify_hostname(check_host);
        Ok(())
    });
    Ok(connector)
}

/// The OpenSSL client configuration for `sslmode` (shared with the replication
/// connection); host-name checking is applied per connection (verify-full only).
pub(crate) fn ssl_connector(source: &Source) -> Result<SslConnector, ConnectError> {
    let tls_err = |e: openssl::error::ErrorStack| {
        ConnectError::config(format!("cannot set up TLS for PostgreSQL: {e}"))
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_err)?;
    let verify = matches!(source.sslmode, SslMode::VerifyCa | SslMode::VerifyFull);
    if verify {
        let ca = source.sslrootcert.as_ref().ok_or_else(|| {
            ConnectError::config("sslmode verify-ca/verify-full needs [source] sslrootcert".into())
        })?;
        builder.set_ca_file(ca).map_err(|e| {
            ConnectError::config(format!(
                "cannot load [source] sslrootcert {}: {e}; point it at the PEM file of the server's CA",
                ca.display()
            ))
        })?;
        builder.set_verify(SslVerifyMode::PEER);
    } else {
        builder.set_verify(SslVerifyMode::NONE);
    }
    Ok(builder.build())
}

/// One line: what failed, where, and what to change.
fn explain(e: &tokio_postgres::Error, source: &Source, user: &str, target: &str) -> ConnectError {
    if let Some(db) = e.as_db_error() {
        return explain_server_error(db.code(), db.message(), source, user, target);
    }
    explain_client_error(&error_chain(e), source, user, target)
}

/// A server's refusal at login (an ErrorResponse), as one line with its fix.
pub(crate) fn explain_server_error(
    code: &SqlState,
    server_message: &str,
    source: &Source,
    user: &str,
    target: &str,
) -> ConnectError {
    {
        let message = if *code == SqlState::INVALID_PASSWORD {
            format!(
                "PostgreSQL at {target} rejected the password of user {user}; check [source] password / password_file"
            )
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            format!(
                "PostgreSQL at {target} refused user {user}: {server_message}; add a pg_hba.conf entry for this host, user and database, or fix [source] user"
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            format!(
                "database {} does not exist on {target}; create it or fix [source] dbname",
                source.dbname
            )
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            return ConnectError {
                message: format!(
                    "PostgreSQL at {target} has no free connections: {server_message}"
                ),
                transient: super::sqlstate::is_transient(code.code()),
            };
        } else if *code == SqlState::CANNOT_CONNECT_NOW {
            return ConnectError {
                message: format!(
                    "PostgreSQL at {target} is starting up or shutting down; retry shortly"
                ),
                transient: super::sqlstate::is_transient(code.code()),
            };
        } else {
            format!(
                "PostgreSQL at {target} refused the connection: {server_message} ({})",
                code.code()
            )
        };
        ConnectError::config(message)
    }
}

/// A failure on walcast's side of the connection (network, TLS, missing password).
pub(crate) fn explain_client_error(
    text: &str,
    source: &Source,
    user: &str,
    target: &str,
) -> ConnectError {
    let text = text.to_owned();
    if text.contains("password missing") {
        return ConnectError::config(format!(
            "PostgreSQL at {target} asks user {user} for a password; set [source] password (e.g. \"${{PGPASSWORD}}\") or password_file"
        ));
    }
    if text.contains("server does not support TLS") || text.contains("does not support SSL") {
        return ConnectError::config(format!(
            "PostgreSQL at {target} does not offer TLS but sslmode is {:?}; enable ssl on the server or lower [source] sslmode",
            source.sslmode
        ));
    }
    if text.contains("certificate verify failed") {
        return ConnectError::config(format!(
            "the TLS certificate of PostgreSQL at {target} did not verify ({text}); check [source] sslrootcert and host"
        ));
    }
    ConnectError {
        message: format!(
            "cannot reach PostgreSQL at {target}: {text}; is it running, and are [source] host and port right?"
        ),
        transient: true,
    }
}

/// The error and its sources, joined, without the connection string (never printed).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}
