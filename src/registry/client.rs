//! The schema registry client used by the pipeline: registers schemas and fetches them by
//! id against any Confluent-compatible registry, with caches so that the hot path makes no
//! HTTP request, bounded retries with exponential backoff on connection errors and 5xx,
//! basic auth, a custom CA and timeouts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::api::{codes, ErrorBody, SubjectVersion, CONTENT_TYPE};
use super::client_metrics::RegistryMetrics;
use super::compat::CompatibilityLevel;
pub use super::retry::RetryPolicy;
use crate::config::Secret;

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RegistryClientConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081` (a path prefix is kept; `user:pass@` in the
    /// URL is used as basic auth when `username` is not set).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file with the CA certificate(s) that signed the registry's TLS certificate, in
    /// addition to the built-in web roots.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Limit for one whole request (connect, send, answer).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// The connector whose `walcast_retrying{component="registry"}` (and readiness)
    /// follows this client's retries.
    pub connector: Option<String>,
}

impl RegistryClientConfig {
    /// Defaults: no auth, 5 s to connect, 30 s per request, [`RetryPolicy::default`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            connector: None,
        }
    }

    /// The `[registry]` section of a connector, with the default timeouts and the
    /// [`RetryPolicy::patient`] retries a running connector wants.
    pub fn from_connector(registry: &crate::config::Registry) -> Self {
        Self {
            username: registry.username.clone(),
            password: registry.password.clone(),
            ca_file: registry.ca_file.clone(),
            retry: RetryPolicy::patient(),
            ..Self::new(registry.url.clone())
        }
    }
}

/// What went wrong talking to the registry. Every message names the registry (never its
/// password), the subject or id, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid schema registry URL \"{url}\": {reason}; set [registry] url to e.g. http://127.0.0.1:8081")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot use the registry CA file {path}: {reason}; set [registry] ca_file to a PEM file with the CA certificate")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up the HTTP client for the schema registry: {0}")]
    Client(String),
    #[error("the schema registry at {url} did not answer {what} after {attempts} attempts (last error: {reason}); check that it is running and that [registry] url is right")]
    Unavailable {
        url: String,
        what: String,
        attempts: u32,
        reason: String,
    },
    #[error("schema registry at {url}: the new schema for subject {subject} is incompatible with its earlier versions under compatibility {level}: {message}; set the subject's compatibility to NONE (PUT {url}/config/{subject} with {{\"compatibility\": \"NONE\"}}) or make the change compatible under {level} (for example make an added column nullable or give it a default)")]
    Incompatible {
        url: String,
        subject: String,
        level: String,
        message: String,
    },
    #[error("schema registry at {url} refused the schema for subject {subject} as invalid (error {code}): {message}; this is a walcast bug, please report it with the table's definition")]
    InvalidSchema {
        url: String,
        subject: String,
        code: u32,
        message: String,
    },
    #[error("schema registry at {url} refused the credentials (HTTP {status}): {message}; check [registry] username and password")]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    #[error("schema registry at {url}: {what} not found (error {code}): {message}")]
    NotFound {
        url: String,
        what: String,
        code: u32,
        message: String,
    },
    #[error(
        "schema registry at {url} answered {what} with HTTP {status} (error {code}): {message}"
    )]
    Http {
        url: String,
        what: String,
        status: u16,
        code: u32,
        message: String,
    },
    #[error("schema registry at {url} sent an unexpected answer to {what}: {reason}")]
    BadResponse {
        url: String,
        what: String,
        reason: String,
    },
}

impl RegistryError {
    /// The registry's error code, when it answered with one.
    pub fn error_code(&self) -> Option<u32> {
        match self {
            Self::InvalidSchema { code, .. }
            | Self::NotFound { code, .. }
            | Self::Http { code, .. } => Some(*code),
            Self::Incompatible { .. } => Some(codes::INCOMPATIBLE_SCHEMA),
            _ => None,
        }
    }
}

/// A client for one registry. Cheap to share (`Arc`); caches are per client.
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    /// The base URL as shown in messages (no credentials, no trailing slash).
    shown: String,
    username: Option<String>,
    password: Option<Secret>,
    retry: RetryPolicy,
    connector: Option<String>,
    /// subject → schema text (as given) → id.
    ids: RwLock<HashMap<String, HashMap<String, u32>>>,
    schemas: RwLock<HashMap<u32, Arc<str>>>,
    requests: AtomicU64,
    /// The connector's registry series (none for a client outside a connector).
    metrics: Option<RegistryMetrics>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.shown)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(config: RegistryClientConfig) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidUrl {
            url: redact(&config.url),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(config.url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        let mut username = config.username.clone();
        let mut password = config.password.clone();
        if !base.username().is_empty() && username.is_none() {
            username = Some(percent_decode(base.username()));
            password = base.password().map(|p| Secret::new(percent_decode(p)));
        }
        // Neither kept in the URL (it would show in messages) nor sent twice.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        let shown = base.as_str().trim_end_matches('/').to_owned();

        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("walcast/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let ca_error = |reason: String| RegistryError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_error(error_chain(&e)))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in the file".to_owned()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Client(error_chain(&e)))?;
        Ok(Self {
            http,
            base,
            shown,
            username,
            password,
            retry: config.retry,
            metrics: config.connector.as_deref().map(RegistryMetrics::of),
            connector: config.connector,
            ids: RwLock::new(HashMap::new()),
            schemas: RwLock::new(HashMap::new()),
            requests: AtomicU64::new(0),
        })
    }

    /// The registry's base URL (without credentials).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The id of `schema` (Avro schema JSON) under `subject`, registering it if needed.
    /// Cached per subject and schema text: after the first call, no HTTP request.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        if let Some(id) = self.cached_id(subject, schema) {
            return Ok(id);
        }
        let what = format!("the registration of a schema for subject {subject}");
        let url = self.url_for(&["subjects", subject, "versions"])?;
        let body = json!({ "schema": schema });
        let answer = self.request(Method::POST, url, Some(&body), &what).await?;
        let id = match answer {
            Answer::Ok(bytes) => {
                #[derive(Deserialize)]
                struct Registered {
                    id: u32,
                }
                self.decode::<Registered>(&bytes, &what)?.id
            }
            Answer::Err(status, error) => {
                return Err(self.register_error(subject, status, error).await);
            }
        };
        tracing::info!(subject, id, registry = %self.shown, "schema registered");
        if let Ok(mut ids) = self.ids.write() {
            ids.entry(subject.to_owned())
                .or_default()
                .insert(schema.to_owned(), id);
        }
        if let Ok(mut schemas) = self.schemas.write() {
            schemas.entry(id).or_insert_with(|| Arc::from(schema));
        }
        Ok(id)
    }

    /// The id of `schema` under `subject` if this client registered it already.
    pub fn cached_id(&self, subject: &str, schema: &str) -> Option<u32> {
        let ids = self.ids.read().ok()?;
        let id = ids.get(subject)?.get(schema).copied();
        if let (Some(_), Some(m)) = (id, &self.metrics) {
            m.cache_hits.inc();
        }
        id
    }

    /// The schema text of `id` (cached after the first fetch).
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(schema) = self.schemas.read().ok().and_then(|s| s.get(&id).cloned()) {
            if let Some(m) = &self.metrics {
                m.cache_hits.inc();
            }
            return Ok(schema);
        }
        let what = format!("schema id {id}");
        let url = self.url_for(&["schemas", "ids", &id.to_string()])?;
        #[derive(Deserialize)]
        struct SchemaString {
            schema: String,
        }
        let text: Arc<str> = match self.request(Method::GET, url, None, &what).await? {
            Answer::Ok(bytes) => Arc::from(self.decode::<SchemaString>(&bytes, &what)?.schema),
            Answer::Err(status, error) => return Err(self.answer_error(&what, status, error)),
        };
        if let Ok(mut schemas) = self.schemas.write() {
            schemas.insert(id, text.clone());
        }
        Ok(text)
    }

    /// `GET /subjects`: every subject (also how `walcast check` sees that the registry
    /// answers and accepts the credentials).
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let url = self.url_for(&["subjects"])?;
        self.get_json(url, "the list of subjects").await
    }

    /// `GET /subjects/{subject}/versions/latest` (not cached).
    pub async fn latest_version(&self, subject: &str) -> Result<SubjectVersion, RegistryError> {
        let what = format!("the latest version of subject {subject}");
        let url = self.url_for(&["subjects", subject, "versions", "latest"])?;
        self.get_json(url, &what).await
    }

    /// The compatibility level in force for `subject` (its own, else the global one).
    pub async fn compatibility(&self, subject: &str) -> Result<CompatibilityLevel, RegistryError> {
        let what = format!("the compatibility level of subject {subject}");
        let mut url = self.url_for(&["config", subject])?;
        url.set_query(Some("defaultToGlobal=true"));
        #[derive(Deserialize)]
        struct Config {
            #[serde(rename = "compatibilityLevel")]
            level: CompatibilityLevel,
        }
        Ok(self.get_json::<Config>(url, &what).await?.level)
    }

    /// Sets the compatibility level of `subject` (or the global one, for `None`).
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        let what = match subject {
            Some(s) => format!("setting the compatibility of subject {s}"),
            None => "setting the global compatibility".to_owned(),
        };
        let url = match subject {
            Some(s) => self.url_for(&["config", s])?,
            None => self.url_for(&["config"])?,
        };
        let body = json!({ "compatibility": level });
        match self.request(Method::PUT, url, Some(&body), &what).await? {
            Answer::Ok(_) => Ok(()),
            Answer::Err(status, error) => Err(self.answer_error(&what, status, error)),
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        what: &str,
    ) -> Result<T, RegistryError> {
        match self.request(Method::GET, url, None, what).await? {
            Answer::Ok(bytes) => self.decode(&bytes, what),
            Answer::Err(status, error) => Err(self.answer_error(what, status, error)),
        }
    }

    fn url_for(&self, segments: &[&str]) -> Result<Url, RegistryError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| RegistryError::InvalidUrl {
                url: self.shown.clone(),
                reason: "the URL cannot have a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8], what: &str) -> Result<T, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::BadResponse {
            url: self.shown.clone(),
            what: what.to_owned(),
            reason: format!("{e} in {}", preview(bytes)),
        })
    }

    /// Sends a request, retrying connection errors, timeouts, 5xx and 429 with backoff.
    async fn request(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Answer, RegistryError> {
        let attempts = self.retry.max_retries.saturating_add(1);
        let mut attempt = 0u32;
        let result = loop {
            let mut request = self.http.request(method.clone(), url.clone()).header(
                reqwest::header::ACCEPT,
                format!("{CONTENT_TYPE}, application/json"),
            );
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(body.to_string());
            }
            if let Some(user) = &self.username {
                request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.sent(&method);
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) if retryable(status) => {
                            format!("HTTP {status}: {}", error_body(&bytes).message)
                        }
                        Ok(bytes) if status.is_success() => break Ok(Answer::Ok(bytes.to_vec())),
                        Ok(bytes) => break Ok(Answer::Err(status, error_body(&bytes))),
                        Err(e) => error_chain(&e),
                    }
                }
                Err(e) if e.is_builder() => break Err(RegistryError::Client(error_chain(&e))),
                Err(e) => error_chain(&e),
            };
            attempt += 1;
            if attempt >= attempts {
                break Err(RegistryError::Unavailable {
                    url: self.shown.clone(),
                    what: what.to_owned(),
                    attempts,
                    reason: failure,
                });
            }
            if attempt == 1 {
                if let Some(c) = &self.connector {
                    crate::observe::board().set_retrying(c, "registry", true);
                }
            }
            let wait = self.retry.backoff(attempt - 1);
            tracing::warn!(
                registry = %self.shown,
                what,
                attempt,
                of = attempts,
                wait_ms = wait.as_millis() as u64,
                "schema registry request failed, retrying: {failure}"
            );
            tokio::time::sleep(wait).await;
        };
        if attempt > 0 {
            if let Some(c) = &self.connector {
                crate::observe::board().set_retrying(c, "registry", false);
            }
        }
        if let (Some(m), Err(_) | Ok(Answer::Err(..))) = (&self.metrics, &result) {
            m.failed(&method);
        }
        result
    }

    async fn register_error(
        &self,
        subject: &str,
        status: StatusCode,
        error: ErrorBody,
    ) -> RegistryError {
        match status.as_u16() {
            409 => {
                let level = match self.compatibility(subject).await {
                    Ok(level) => level.to_string(),
                    Err(_) => "(unknown: the registry did not say)".to_owned(),
                };
                RegistryError::Incompatible {
                    url: self.shown.clone(),
                    subject: subject.to_owned(),
                    level,
                    message: error.message,
                }
            }
            422 => RegistryError::InvalidSchema {
                url: self.shown.clone(),
                subject: subject.to_owned(),
                code: error.error_code,
                message: error.message,
            },
            _ => self.answer_error(
                &format!("the registration for subject {subject}"),
                status,
                error,
            ),
        }
    }

    fn answer_error(&self, what: &str, status: StatusCode, error: ErrorBody) -> RegistryError {
        let url = self.shown.clone();
        match status.as_u16() {
            401 | 403 => RegistryError::Unauthorized {
                url,
                status: status.as_u16(),
                message: error.message,
            },
            404 => RegistryError::NotFound {
                url,
                what: what.to_owned(),
                code: error.error_code,
                message: error.message,
            },
            _ => RegistryError::Http {
                url,
                what: what.to_owned(),
                status: status.as_u16(),
                code: error.error_code,
                message: error.message,
            },
        }
    }
}

enum Answer {
    Ok(Vec<u8>),
    Err(StatusCode, ErrorBody),
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// The registry's error body, or the raw text when it is not Confluent-shaped.
fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        error_code: 0,
        message: preview(bytes),
    })
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(300).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    if shown.is_empty() {
        "(empty body)".to_owned()
    } else {
        shown
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message alone is terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A URL for messages: any `user:password@` removed.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => match url.split_once('@') {
            Some((_, rest)) => format!("…@{rest}"),
            None => url.to_owned(),
        },
    }
}

fn percent_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let waits: Vec<u64> = (0..6)
            .map(|a| policy.backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(200), Duration::from_secs(1));
    }

    #[test]
    fn credentials_in_the_url_become_basic_auth_and_never_show() {
        let client = RegistryClient::new(RegistryClientConfig::new(
            "https://bob:s%40cret@reg.example:8081/prefix/",
        ))
        .unwrap();
        assert_eq!(client.url(), "https://reg.example:8081/prefix");
        assert_eq!(client.username.as_deref(), Some("bob"));
        assert_eq!(client.password.as_ref().map(Secret::expose), Some("s@cret"));
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("s@cret") && !shown.contains("s%40cret"),
            "{shown}"
        );
        let url = client.url_for(&["subjects", "a/b c", "versions"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://reg.example:8081/prefix/subjects/a%2Fb%20c/versions"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_passwords() {
        let err = RegistryClient::new(RegistryClientConfig::new("ftp://u:pw@x")).unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
        assert!(RegistryClient::new(RegistryClientConfig::new("not a url")).is_err());
    }

    #[test]
    fn error_bodies_fall_back_to_text() {
        let body = error_body(br#"{"error_code":40401,"message":"Subject 's' not found."}"#);
        assert_eq!(body.error_code, 40401);
        assert_eq!(
            error_body(b"<html>oops</html>").message,
            "<html>oops</html>"
        );
    }
}
