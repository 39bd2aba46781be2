//! The dev schema registry: `walcast registry`, a Confluent-Schema-Registry-compatible REST
//! server (AVRO only) over the append-only store in `store`.

mod canonical;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::api::{ApiError, SchemaRequest, VersionId, CONTENT_TYPE};
use super::compat::CompatibilityLevel;
use store::{Against, Deleted, Store, StoreError};

/// Why the registry could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the schema registry cannot listen on {addr}: {source}; pick a free address with --listen"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the schema registry stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// The largest request body accepted (schemas are JSON text; Confluent's default limit is
/// of the same order).
const MAX_BODY: usize = 16 * 1024 * 1024;

struct App {
    store: Mutex<Store>,
    requests: AtomicU64,
}

impl App {
    fn store(&self) -> Result<MutexGuard<'_, Store>, ApiError> {
        self.store.lock().map_err(|_| {
            ApiError::store(
                "the registry store is unavailable after an earlier failure; restart the registry",
            )
        })
    }
}

type Shared = State<Arc<App>>;
type Params = Query<HashMap<String, String>>;
type Reply = Result<Response, ApiError>;

/// A running registry (in-process): its address, request counter and shutdown.
/// Dropping it also stops the server.
pub struct RegistryServer {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RegistryServer {
    /// Opens (or creates) the store in `data_dir`, binds `listen` (port 0 picks a free
    /// port) and serves in a background task.
    pub async fn start(listen: SocketAddr, data_dir: &Path) -> Result<Self, ServerError> {
        let store = Store::open(data_dir)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        let app = Arc::new(App {
            store: Mutex::new(store),
            requests: AtomicU64::new(0),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let service = router(app.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    // Either an explicit shutdown or the handle being dropped.
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!(
            url = %format!("http://{addr}"),
            data_dir = %data_dir.display(),
            "schema registry listening"
        );
        Ok(Self {
            addr,
            app,
            shutdown: Some(tx),
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<address>`, the URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far (every path and method), for tests that check caching.
    pub fn request_count(&self) -> u64 {
        self.app.requests.load(Ordering::SeqCst)
    }

    /// Stops accepting connections, finishes requests in flight and returns.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }
}

/// `walcast registry`: serves until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(listen: SocketAddr, data_dir: &Path) -> Result<(), ServerError> {
    let mut server = RegistryServer::start(listen, data_dir).await?;
    tokio::select! {
        () = crate::shutdown::shutdown_signal() => {
            tracing::info!("shutting down the schema registry");
            server.shutdown().await
        }
        ended = &mut server.task => {
            match ended {
                Ok(result) => result.map_err(ServerError::Serve),
                Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
            }
        }
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route(
            "/config",
            get(global_config)
                .put(set_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(subject_config)
                .put(set_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_version_compatibility),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(test_subject_compatibility),
        )
        .route("/mode", get(mode))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// Counts and logs every request.
async fn track(State(app): Shared, request: Request, next: Next) -> Response {
    app.requests.fetch_add(1, Ordering::SeqCst);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(%method, path, status = response.status().as_u16(), "registry request");
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.body.error_code, message = %self.body.message, "registry error");
        }
        with_type(status, serde_json::to_vec(&self.body).unwrap_or_default())
    }
}

fn with_type(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn ok<T: Serialize>(value: &T) -> Reply {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::store(format!("cannot encode the response: {e}")))?;
    Ok(with_type(StatusCode::OK, body))
}

/// A schema text as the body itself (the `/schema` endpoints).
fn raw(schema: &str) -> Reply {
    Ok(with_type(StatusCode::OK, schema.as_bytes().to_vec()))
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::unprocessable(format!(
            "The request body is not the JSON this endpoint expects: {e}"
        ))
    })
}

/// A query flag: Confluent's clients send `true`/`false`, Python's send `True`/`False`.
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn deleted(params: &HashMap<String, String>) -> Deleted {
    if flag(params, "deleted") {
        Deleted::Include
    } else {
        Deleted::Exclude
    }
}

fn schema_id(text: &str) -> Result<u32, ApiError> {
    text.trim().parse::<u32>().map_err(|_| {
        ApiError::new(
            404,
            format!("HTTP 404 Not Found: \"{text}\" is not a schema id"),
        )
    })
}

/// The schema text of a request, refusing what this registry does not support.
fn schema_text(request: &SchemaRequest) -> Result<&str, ApiError> {
    if let Some(kind) = &request.schema_type {
        if !kind.eq_ignore_ascii_case("AVRO") {
            return Err(ApiError::invalid_schema(format!(
                "Invalid schema type {kind}: walcast's dev registry supports AVRO only; use \
                 Confluent Schema Registry for {kind} schemas"
            )));
        }
    }
    if request.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::invalid_schema(
            "Schema references are not supported by walcast's dev registry; inline the \
             referenced types in the schema",
        ));
    }
    match request.schema.as_deref() {
        Some(text) if !text.trim().is_empty() => Ok(text),
        _ => Err(ApiError::invalid_schema("Empty schema")),
    }
}

async fn root() -> Reply {
    ok(&json!({}))
}

async fn not_found() -> ApiError {
    ApiError::new(404, "HTTP 404 Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, "HTTP 405 Method Not Allowed")
}

async fn schema_types() -> Reply {
    ok(&["AVRO"])
}

async fn mode() -> Reply {
    ok(&json!({"mode": "READWRITE"}))
}

async fn schema_by_id(State(app): Shared, UrlPath(id): UrlPath<String>) -> Reply {
    let text = app.store()?.schema_by_id(schema_id(&id)?)?;
    ok(&json!({ "schema": &*text }))
}

async fn raw_schema_by_id(State(app): Shared, UrlPath(id): UrlPath<String>) -> Reply {
    let text = app.store()?.schema_by_id(schema_id(&id)?)?;
    raw(&text)
}

async fn subjects_of_id(
    State(app): Shared,
    UrlPath(id): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    let pairs = app.store()?.versions_of_id(schema_id(&id)?, deleted(&q))?;
    let subjects: BTreeSet<String> = pairs.into_iter().map(|(s, _)| s).collect();
    ok(&subjects)
}

async fn versions_of_id(
    State(app): Shared,
    UrlPath(id): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    let pairs = app.store()?.versions_of_id(schema_id(&id)?, deleted(&q))?;
    let list: Vec<_> = pairs
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    ok(&list)
}

async fn list_subjects(State(app): Shared, Query(q): Params) -> Reply {
    let subjects = app.store()?.subjects(deleted(&q));
    let prefix = q.get("subjectPrefix").map(String::as_str).unwrap_or("");
    let subjects: Vec<String> = subjects
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .collect();
    ok(&subjects)
}

async fn register(State(app): Shared, UrlPath(subject): UrlPath<String>, bytes: Bytes) -> Reply {
    let request: SchemaRequest = body(&bytes)?;
    let text = schema_text(&request)?;
    let id = app.store()?.register(&subject, text)?;
    ok(&json!({ "id": id }))
}

async fn lookup(
    State(app): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
    bytes: Bytes,
) -> Reply {
    let request: SchemaRequest = body(&bytes)?;
    let text = schema_text(&request)?;
    let found = app.store()?.lookup(&subject, text, deleted(&q))?;
    ok(&found)
}

async fn delete_subject(
    State(app): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    let versions = app
        .store()?
        .delete_subject(&subject, flag(&q, "permanent"))?;
    ok(&versions)
}

async fn list_versions(
    State(app): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    let versions = app.store()?.versions(&subject, deleted(&q))?;
    ok(&versions)
}

async fn get_version(
    State(app): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Reply {
    let version = VersionId::parse(&version)?;
    let found = app.store()?.version(&subject, version, deleted(&q))?;
    ok(&found)
}

async fn raw_version(
    State(app): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Reply {
    let version = VersionId::parse(&version)?;
    let found = app.store()?.version(&subject, version, deleted(&q))?;
    raw(&found.schema)
}

async fn delete_version(
    State(app): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Reply {
    let version = VersionId::parse(&version)?;
    let deleted = app
        .store()?
        .delete_version(&subject, version, flag(&q, "permanent"))?;
    ok(&deleted)
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    #[serde(default)]
    compatibility: Option<String>,
}

fn level_of(bytes: &Bytes) -> Result<CompatibilityLevel, ApiError> {
    let request: ConfigRequest = body(bytes)?;
    request
        .compatibility
        .as_deref()
        .and_then(CompatibilityLevel::parse)
        .ok_or_else(ApiError::invalid_compatibility_level)
}

fn level_body(level: CompatibilityLevel) -> Reply {
    ok(&json!({ "compatibilityLevel": level }))
}

async fn global_config(State(app): Shared) -> Reply {
    let level = app.store()?.global_level();
    level_body(level)
}

async fn set_global_config(State(app): Shared, bytes: Bytes) -> Reply {
    let level = level_of(&bytes)?;
    app.store()?.set_level(None, level)?;
    ok(&json!({ "compatibility": level }))
}

async fn delete_global_config(State(app): Shared) -> Reply {
    let previous = app.store()?.delete_level(None)?;
    level_body(previous)
}

async fn subject_config(
    State(app): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    let store = app.store()?;
    match store.subject_level(&subject) {
        Some(level) => level_body(level),
        None if flag(&q, "defaultToGlobal") => level_body(store.global_level()),
        None => Err(ApiError::subject_compatibility_not_configured(&subject)),
    }
}

async fn set_subject_config(
    State(app): Shared,
    UrlPath(subject): UrlPath<String>,
    bytes: Bytes,
) -> Reply {
    let level = level_of(&bytes)?;
    app.store()?.set_level(Some(&subject), level)?;
    ok(&json!({ "compatibility": level }))
}

async fn delete_subject_config(State(app): Shared, UrlPath(subject): UrlPath<String>) -> Reply {
    let previous = app.store()?.delete_level(Some(&subject))?;
    level_body(previous)
}

fn compatibility_reply(
    app: &App,
    subject: &str,
    against: Against,
    q: &HashMap<String, String>,
    bytes: &Bytes,
) -> Reply {
    let request: SchemaRequest = body(bytes)?;
    let text = schema_text(&request)?;
    let verbose = flag(q, "verbose");
    let messages = match app.store()?.test_compatibility(subject, text, against) {
        Ok(messages) => messages,
        Err(e) if verbose && e.body.error_code == super::api::codes::INVALID_SCHEMA => {
            vec![e.body.message]
        }
        Err(e) => return Err(e),
    };
    if verbose {
        ok(&json!({ "is_compatible": messages.is_empty(), "messages": messages }))
    } else {
        ok(&json!({ "is_compatible": messages.is_empty() }))
    }
}

async fn test_version_compatibility(
    State(app): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
    bytes: Bytes,
) -> Reply {
    let version = VersionId::parse(&version)?;
    compatibility_reply(&app, &subject, Against::Version(version), &q, &bytes)
}

async fn test_subject_compatibility(
    State(app): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
    bytes: Bytes,
) -> Reply {
    compatibility_reply(&app, &subject, Against::AllVersions, &q, &bytes)
}
