//! Getting into PostgreSQL on walcast's own protocol connection: TLS per `sslmode`
//! (with the `tls-server-end-point` channel binding data of the server's certificate),
//! the startup message with walcast's session settings, and the password exchange:
//! SCRAM-SHA-256-PLUS when TLS is on and the server offers it, SCRAM-SHA-256, MD5, and a
//! cleartext password only over a connection whose server is verified (or when the
//! connector allows it).

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

use super::connection::{error_fields, Backend, ReplicationConnection, ReplicationError, Stream};
use crate::config::{Source, SslMode};
use crate::postgres::{explain_server_error, ssl_connector, ConnectError};

/// What the connection's TLS layer is: none, or encrypted with the channel binding data
/// of the server's certificate (absent when its signature algorithm gives none).
pub(super) struct Negotiated {
    pub stream: Box<dyn Stream>,
    pub encrypted: bool,
    pub end_point: Option<Vec<u8>>,
}

/// The error for a server that asks for a cleartext password where walcast may not send
/// one.
fn cleartext_refused(source: &Source, target: &str, encrypted: bool) -> ReplicationError {
    ConnectError::config(format!(
        "PostgreSQL at {target} asks user {} for its password in clear text (pg_hba.conf method `password`) over a connection {} (sslmode = {}), so it could be read on the way; switch that pg_hba.conf entry to scram-sha-256, or set [source] sslmode = \"verify-full\" with sslrootcert, or accept the risk with [source] allow_cleartext_password = true",
        source.user,
        if encrypted { "whose server certificate walcast does not verify" } else { "that is not encrypted" },
        source.sslmode.as_str(),
    ))
    .into()
}

impl ReplicationConnection {
    /// Sends the startup message (`replication=database` when `replication`) and logs in.
    pub(super) async fn startup(
        &mut self,
        source: &Source,
        replication: bool,
    ) -> Result<(), ReplicationError> {
        self.send_startup(source, replication).await?;
        let password = source.password.as_ref().map(|p| p.expose().as_bytes());
        let missing_password = || {
            ReplicationError::from(ConnectError::config(format!(
                "PostgreSQL at {} asks user {} for a password; set [source] password (e.g. \"${{PGPASSWORD}}\") or password_file",
                source.host, source.user
            )))
        };
        loop {
            match self.read_backend().await? {
                Backend::Message(backend::Message::AuthenticationOk) => break,
                Backend::Message(backend::Message::AuthenticationCleartextPassword) => {
                    if !source.sslmode.verifies_server() && !source.allow_cleartext_password {
                        return Err(cleartext_refused(source, &self.target, self.encrypted));
                    }
                    let pw = password.ok_or_else(missing_password)?;
                    self.wbuf.clear();
                    frontend::password_message(pw, &mut self.wbuf)
                        .map_err(|e| self.protocol(e.to_string()))?;
                    self.flush().await?;
                }
                Backend::Message(backend::Message::AuthenticationMd5Password(body)) => {
                    let pw = password.ok_or_else(missing_password)?;
                    let hash = md5_hash(source.user.as_bytes(), pw, body.salt());
                    self.wbuf.clear();
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf)
                        .map_err(|e| self.protocol(e.to_string()))?;
                    self.flush().await?;
                }
                Backend::Message(backend::Message::AuthenticationSasl(body)) => {
                    let pw = password.ok_or_else(missing_password)?;
                    let mut mechanisms = body.mechanisms();
                    let (mut scram, mut plus) = (false, false);
                    while let Some(m) = mechanisms
                        .next()
                        .map_err(|e| self.protocol(e.to_string()))?
                    {
                        scram |= m == SCRAM_SHA_256;
                        plus |= m == SCRAM_SHA_256_PLUS;
                    }
                    // Channel binding ties the exchange to this TLS session, so a man in
                    // the middle cannot relay it.
                    let (mechanism, binding) = match (&self.end_point, plus) {
                        (Some(data), true) => (
                            SCRAM_SHA_256_PLUS,
                            ChannelBinding::tls_server_end_point(data.clone()),
                        ),
                        _ if !scram => return Err(self.protocol(
                            "the server offers no SASL mechanism walcast supports (SCRAM-SHA-256)"
                                .into(),
                        )),
                        (Some(_), false) => (SCRAM_SHA_256, ChannelBinding::unrequested()),
                        (None, _) => (SCRAM_SHA_256, ChannelBinding::unsupported()),
                    };
                    self.scram(pw, mechanism, binding).await?;
                    self.channel_bound = mechanism == SCRAM_SHA_256_PLUS;
                }
                Backend::Message(backend::Message::ErrorResponse(body)) => {
                    return Err(self.login_refused(source, &body))
                }
                Backend::Message(backend::Message::NoticeResponse(_)) => {}
                _ => {
                    return Err(self.protocol(
                        "unexpected message during authentication (GSS/SSPI are not supported)"
                            .into(),
                    ))
                }
            }
        }
        loop {
            match self.read_backend().await? {
                Backend::Message(backend::Message::ReadyForQuery(_)) => return Ok(()),
                Backend::Message(backend::Message::ParameterStatus(p)) => {
                    if p.name().ok() == Some("server_version") {
                        self.server_version = p
                            .value()
                            .map(super::connection::parse_server_version)
                            .unwrap_or(0);
                    }
                }
                Backend::Message(backend::Message::ErrorResponse(body)) => {
                    return Err(self.login_refused(source, &body))
                }
                Backend::Message(_) => {}
                Backend::CopyBothResponse => {
                    return Err(self.protocol("CopyBoth before login finished".into()))
                }
            }
        }
    }

    /// The server refused the login: the line that names the cause and the fix.
    fn login_refused(
        &self,
        source: &Source,
        body: &backend::ErrorResponseBody,
    ) -> ReplicationError {
        let (code, message) = error_fields(body);
        explain_server_error(
            &SqlState::from_code(&code),
            &message,
            source,
            &source.user,
            &self.target,
        )
        .into()
    }

    async fn send_startup(
        &mut self,
        source: &Source,
        replication: bool,
    ) -> Result<(), ReplicationError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("user", source.user.as_str()),
            ("database", source.dbname.as_str()),
            ("application_name", "walcast"),
        ];
        if replication {
            params.push(("replication", "database"));
        }
        params.extend_from_slice(crate::postgres::SESSION_SETTINGS);
        self.wbuf.clear();
        frontend::startup_message(params.iter().copied(), &mut self.wbuf)
            .map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await
    }

    /// Whether the server asks `[source]`'s user for a cleartext password where walcast
    /// may not send one: the first answer to an ordinary startup on a connection of
    /// its own, which then ends (nothing is sent). tokio-postgres, which the SQL
    /// connections use, would send the password whatever the server asks for, so they
    /// ask this first (see `postgres::connect`).
    pub async fn refuses_cleartext(source: &Source) -> Result<(), ReplicationError> {
        let mut conn = Self::open(source).await?;
        conn.send_startup(source, false).await?;
        let asks_cleartext = matches!(
            conn.read_backend().await?,
            Backend::Message(backend::Message::AuthenticationCleartextPassword)
        );
        if asks_cleartext {
            return Err(cleartext_refused(source, &conn.target, conn.encrypted));
        }
        Ok(())
    }

    async fn scram(
        &mut self,
        password: &[u8],
        mechanism: &str,
        binding: ChannelBinding,
    ) -> Result<(), ReplicationError> {
        let mut scram = ScramSha256::new(password, binding);
        self.wbuf.clear();
        frontend::sasl_initial_response(mechanism, scram.message(), &mut self.wbuf)
            .map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        match self.read_backend().await? {
            Backend::Message(backend::Message::AuthenticationSaslContinue(body)) => {
                scram
                    .update(body.data())
                    .map_err(|e| self.protocol(format!("SCRAM: {e}")))?;
            }
            Backend::Message(backend::Message::ErrorResponse(body)) => {
                return Err(self.server_error("SCRAM login", &body))
            }
            _ => return Err(self.protocol("unexpected message during SCRAM".into())),
        }
        self.wbuf.clear();
        frontend::sasl_response(scram.message(), &mut self.wbuf)
            .map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        match self.read_backend().await? {
            Backend::Message(backend::Message::AuthenticationSaslFinal(body)) => {
                scram.finish(body.data()).map_err(|e| {
                    self.protocol(format!("SCRAM: the server's proof did not verify: {e}"))
                })
            }
            Backend::Message(backend::Message::ErrorResponse(body)) => {
                // A wrong password surfaces here as 28P01; the caller explains it.
                let (code, message) = error_fields(&body);
                Err(ReplicationError::Server {
                    command: "SCRAM login".into(),
                    code,
                    message,
                })
            }
            _ => Err(self.protocol("unexpected message during SCRAM".into())),
        }
    }
}

/// TLS as `sslmode` says (libpq's behaviour): disable never asks, prefer falls back to
/// plain TCP when the server has no TLS, require and above insist; verify-ca checks the
/// chain against `sslrootcert`, verify-full the host name too.
pub(super) async fn negotiate_tls(
    mut tcp: TcpStream,
    source: &Source,
    target: &str,
) -> Result<Negotiated, ReplicationError> {
    let plain = |tcp: TcpStream| Negotiated {
        stream: Box::new(tcp),
        encrypted: false,
        end_point: None,
    };
    if source.sslmode == SslMode::Disable {
        return Ok(plain(tcp));
    }
    let io = |e: std::io::Error| ReplicationError::Io {
        target: target.to_owned(),
        detail: e.to_string(),
    };
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf).await.map_err(io)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io)?;
    if answer[0] != b'S' {
        if source.sslmode == SslMode::Prefer {
            return Ok(plain(tcp));
        }
        return Err(ConnectError::config(format!(
            "PostgreSQL at {target} does not offer TLS but sslmode is {:?}; enable ssl on the server or lower [source] sslmode",
            source.sslmode
        ))
        .into());
    }
    let connector = ssl_connector(source)?;
    let mut config = connector
        .configure()
        .map_err(|e| ConnectError::config(format!("cannot set up TLS: {e}")))?;
    config.set_verify_hostname(source.sslmode == SslMode::VerifyFull);
    let ssl = config
        .into_ssl(&source.host)
        .map_err(|e| ConnectError::config(format!("cannot set up TLS: {e}")))?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp)
        .map_err(|e| ConnectError::config(format!("cannot set up TLS: {e}")))?;
    if let Err(e) = std::pin::Pin::new(&mut stream).connect().await {
        // OpenSSL's error says "certificate verify failed"; the verify result says why
        // (e.g. "hostname mismatch").
        let verify = stream.ssl().verify_result();
        let why = if verify == openssl::x509::X509VerifyResult::OK {
            String::new()
        } else {
            format!(" ({})", verify.error_string())
        };
        return Err(ConnectError::config(format!(
            "TLS handshake with PostgreSQL at {target} failed: {e}{why}; check [source] sslmode, sslrootcert and host"
        ))
        .into());
    }
    let end_point = stream
        .ssl()
        .peer_certificate()
        .and_then(|cert| tls_server_end_point(&cert));
    Ok(Negotiated {
        stream: Box::new(stream),
        encrypted: true,
        end_point,
    })
}

/// RFC 5929's `tls-server-end-point`: the hash of the server's certificate, with the
/// hash of its signature algorithm (SHA-256 where that is MD5 or SHA-1). `None` when
/// the algorithm names no hash (e.g. Ed25519): no channel binding then.
fn tls_server_end_point(cert: &openssl::x509::X509Ref) -> Option<Vec<u8>> {
    let digest = cert
        .signature_algorithm()
        .object()
        .nid()
        .signature_algorithms()?
        .digest;
    let md = match digest {
        Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
        other => MessageDigest::from_nid(other)?,
    };
    cert.digest(md).ok().map(|d| d.to_vec())
}
