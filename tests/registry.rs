//! The dev schema registry (every endpoint, compatibility levels, errors, restarts) and the
//! registry client (caching, retries, auth, TLS), in-process on loopback ports; plus
//! Confluent's own Python client against the dev registry.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use walcast::config::Secret;
use walcast::registry::{
    CompatibilityLevel, RegistryClient, RegistryClientConfig, RegistryError, RegistryServer,
    RetryPolicy, SubjectKind, SubjectNameStrategy,
};

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A record schema in canonical form (as the registry stores it) with the given fields.
fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#)
}

fn body(schema: &str) -> String {
    json!({ "schema": schema }).to_string()
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    /// Sends a request; returns the status and the body (JSON, or a JSON string when the
    /// body is not JSON). Checks Confluent's content type on every answer.
    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header("Content-Type", CT).body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, CT, "{path}");
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }
    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(&format!("/subjects/{subject}/versions"), &body(schema))
            .await
    }
}

async fn start(dir: &Path) -> (RegistryServer, Api) {
    let server = RegistryServer::start(any_port(), dir).await.unwrap();
    let api = Api::new(server.url());
    (server, api)
}

fn error(code: u32) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["error_code"] == code && v["message"].as_str().is_some_and(|m| !m.is_empty())
}

#[tokio::test]
async fn every_endpoint_answers_like_confluent() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = start(dir.path()).await;
    let v1 = record(r#"{"name":"id","type":"long"}"#);
    let v2 = record(
        r#"{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}"#,
    );

    assert_eq!(api.get("/").await, (200, json!({})));
    assert_eq!(api.get("/schemas/types").await, (200, json!(["AVRO"])));
    assert_eq!(api.get("/subjects").await, (200, json!([])));

    // Register: {"id": N}; the same schema again (even written differently) keeps its id.
    assert_eq!(
        api.register("orders-value", &v1).await,
        (200, json!({"id": 1}))
    );
    let messy = "{ \"fields\": [ {\"type\": {\"type\": \"long\"}, \"name\": \"id\"} ],\n \"name\": \"shop.Order\", \"type\": \"record\" }";
    assert_eq!(
        api.register("orders-value", messy).await,
        (200, json!({"id": 1}))
    );
    assert_eq!(
        api.register("orders-value", &v2).await,
        (200, json!({"id": 2}))
    );
    // Ids are global per schema: another subject with v1 gets id 1, at its own version 1.
    assert_eq!(
        api.register("archive-value", &v2).await,
        (200, json!({"id": 2}))
    );
    assert_eq!(
        api.register("archive2-value", &v1).await,
        (200, json!({"id": 1}))
    );
    // application/json bodies are accepted too.
    let plain = api
        .http
        .post(format!("{}/subjects/orders-value/versions", api.base))
        .header("Content-Type", "application/json")
        .body(body(&v2))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    let text = plain.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"id": 2})
    );

    assert_eq!(
        api.get("/schemas/ids/1").await,
        (200, json!({"schema": v1}))
    );
    assert_eq!(
        api.get("/schemas/ids/2/schema").await,
        (200, serde_json::from_str::<Value>(&v2).unwrap())
    );
    assert_eq!(
        api.get("/schemas/ids/2/subjects").await,
        (200, json!(["archive-value", "orders-value"]))
    );
    assert_eq!(
        api.get("/schemas/ids/1/versions").await,
        (
            200,
            json!([{"subject": "archive2-value", "version": 1}, {"subject": "orders-value", "version": 1}])
        )
    );
    let (status, missing) = api.get("/schemas/ids/99").await;
    assert_eq!(status, 404);
    assert_eq!(
        missing,
        json!({"error_code": 40403, "message": "Schema 99 not found"})
    );

    assert_eq!(
        api.get("/subjects").await,
        (
            200,
            json!(["archive-value", "archive2-value", "orders-value"])
        )
    );
    assert_eq!(
        api.get("/subjects/orders-value/versions").await,
        (200, json!([1, 2]))
    );
    let expect_v2 = json!({"subject": "orders-value", "version": 2, "id": 2, "schema": v2});
    assert_eq!(
        api.get("/subjects/orders-value/versions/2").await,
        (200, expect_v2.clone())
    );
    assert_eq!(
        api.get("/subjects/orders-value/versions/latest").await,
        (200, expect_v2.clone())
    );
    assert_eq!(
        api.get("/subjects/orders-value/versions/1/schema").await,
        (200, serde_json::from_str::<Value>(&v1).unwrap())
    );

    // Lookup.
    assert_eq!(
        api.post("/subjects/orders-value", &body(&v2)).await,
        (200, expect_v2)
    );
    let (status, b) = api
        .post(
            "/subjects/orders-value",
            &body(&record(r#"{"name":"x","type":"int"}"#)),
        )
        .await;
    assert!(status == 404 && error(40403)(&b), "{b}");
    let (status, b) = api.post("/subjects/nobody", &body(&v1)).await;
    assert_eq!(
        (status, b),
        (
            404,
            json!({"error_code": 40401, "message": "Subject 'nobody' not found."})
        )
    );

    // Versions that don't exist or don't parse.
    let (status, b) = api.get("/subjects/orders-value/versions/7").await;
    assert_eq!(
        (status, b),
        (
            404,
            json!({"error_code": 40402, "message": "Version 7 not found."})
        )
    );
    for bad in ["0", "abc", "-2"] {
        let (status, b) = api
            .get(&format!("/subjects/orders-value/versions/{bad}"))
            .await;
        assert!(status == 422 && error(42202)(&b), "{bad}: {b}");
    }
    let (status, b) = api.get("/subjects/nobody/versions").await;
    assert!(status == 404 && error(40401)(&b));
    let (status, b) = api.get("/subjects/nobody/versions/latest").await;
    assert!(status == 404 && error(40401)(&b));

    // Subjects with characters that need escaping in a path.
    let (status, _) = api.register("a%2Fb%20c", &v1).await;
    assert_eq!(status, 200);
    assert!(api
        .get("/subjects")
        .await
        .1
        .as_array()
        .unwrap()
        .contains(&json!("a/b c")));
}

#[tokio::test]
async fn errors_have_confluent_bodies_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = start(dir.path()).await;
    let v1 = record(r#"{"name":"id","type":"long"}"#);
    let cases: Vec<(&str, String, u16, u32)> = vec![
        ("malformed JSON", "{\"schema\": ".to_owned(), 422, 422),
        ("not an object", "[1, 2]".to_owned(), 422, 422),
        ("no schema", "{}".to_owned(), 422, 42201),
        (
            "not Avro",
            body(r#"{"type":"record","name":"R"}"#),
            422,
            42201,
        ),
        ("not JSON inside", body("{nope"), 422, 42201),
        (
            "unknown name",
            body(&record(r#"{"name":"x","type":"Missing"}"#)),
            422,
            42201,
        ),
        (
            "protobuf",
            json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}).to_string(),
            422,
            42201,
        ),
        (
            "references",
            json!({"schema": v1, "references": [{"name": "x", "subject": "y", "version": 1}]})
                .to_string(),
            422,
            42201,
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, b) = api.post("/subjects/s/versions", &request).await;
        assert!(got == status && error(code)(&b), "{what}: {got} {b}");
    }
    let (status, b) = api.get("/no/such/path").await;
    assert_eq!((status, b["error_code"].clone()), (404, json!(404)));
    let (status, b) = api.call(Method::PATCH, "/subjects", None).await;
    assert_eq!((status, b["error_code"].clone()), (405, json!(405)));
    let (status, b) = api.get("/schemas/ids/notanumber").await;
    assert_eq!(status, 404, "{b}");
    // Nothing was registered by the failures.
    assert_eq!(api.get("/subjects").await, (200, json!([])));
}

/// (level, earlier versions, an accepted next version, a rejected next version).
fn evolutions() -> Vec<(&'static str, Vec<String>, String, String)> {
    let a = r#"{"name":"a","type":"long"}"#;
    let b_default = r#"{"name":"b","type":"string","default":""}"#;
    let b = r#"{"name":"b","type":"string"}"#;
    let c_default = r#"{"name":"c","type":"int","default":0}"#;
    let c = r#"{"name":"c","type":"int"}"#;
    let r = |fields: &[&str]| record(&fields.join(","));
    vec![
        // Adding a field: with a default new readers cope with old data; without, not.
        ("BACKWARD", vec![r(&[a])], r(&[a, b_default]), r(&[a, b])),
        // v3 without b's default reads v2 data, not v1 data.
        (
            "BACKWARD_TRANSITIVE",
            vec![r(&[a]), r(&[a, b_default])],
            r(&[a, b_default, c_default]),
            r(&[a, b]),
        ),
        // Removing a field old readers need (no default) breaks them; adding one doesn't.
        ("FORWARD", vec![r(&[a, b])], r(&[a, b, c]), r(&[a])),
        // v3 without b is fine for v2 (b has a default there) but not for v1.
        (
            "FORWARD_TRANSITIVE",
            vec![r(&[a, b]), r(&[a, b_default])],
            r(&[a, b_default, c]),
            r(&[a]),
        ),
        ("FULL", vec![r(&[a])], r(&[a, b_default]), r(&[a, b])),
        // v3 with b but no default is FULL-compatible with v2, not with v1.
        (
            "FULL_TRANSITIVE",
            vec![r(&[a]), r(&[a, b_default])],
            r(&[a, b_default, c_default]),
            r(&[a, b]),
        ),
        // NONE accepts anything, even a type change; the rejected case is checked below.
        (
            "NONE",
            vec![r(&[a])],
            record(r#"{"name":"a","type":"string"}"#),
            String::new(),
        ),
    ]
}

#[tokio::test]
async fn each_compatibility_level_accepts_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = start(dir.path()).await;
    for (level, earlier, accepted, rejected) in evolutions() {
        let subject = format!("{}-value", level.to_lowercase());
        let (status, set) = api
            .put(
                &format!("/config/{subject}"),
                &json!({"compatibility": level}).to_string(),
            )
            .await;
        assert_eq!((status, set), (200, json!({"compatibility": level})));
        for schema in &earlier {
            let (status, b) = api.register(&subject, schema).await;
            assert_eq!(status, 200, "{level}: earlier version refused: {b}");
        }
        if !rejected.is_empty() {
            let (status, b) = api.register(&subject, &rejected).await;
            assert_eq!(status, 409, "{level}: {b}");
            assert_eq!(b["error_code"], 409, "{level}: {b}");
            let message = b["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("subject \"{subject}\"")),
                "{message}"
            );
            assert!(
                message.contains(&format!("compatibility: '{level}'")),
                "{message}"
            );
            // The compatibility endpoint agrees (against all versions).
            let (_, check) = api
                .post(
                    &format!("/compatibility/subjects/{subject}/versions?verbose=true"),
                    &body(&rejected),
                )
                .await;
            assert_eq!(check["is_compatible"], false, "{level}: {check}");
        }
        let (status, b) = api.register(&subject, &accepted).await;
        assert_eq!(status, 200, "{level}: {b}");
        let expected_version = earlier.len() + 1;
        assert_eq!(
            api.get(&format!("/subjects/{subject}/versions"))
                .await
                .1
                .as_array()
                .unwrap()
                .len(),
            expected_version
        );
    }
    // The non-transitive levels accept what only the transitive ones refuse.
    for (level, rejected_transitive) in [
        (
            "BACKWARD",
            record(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#),
        ),
        ("FORWARD", record(r#"{"name":"a","type":"long"}"#)),
        (
            "FULL",
            record(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#),
        ),
    ] {
        let (_, earlier, _, _) = evolutions()
            .into_iter()
            .find(|e| e.0 == format!("{level}_TRANSITIVE"))
            .unwrap();
        let subject = format!("plain-{}", level.to_lowercase());
        api.put(
            &format!("/config/{subject}"),
            &json!({"compatibility": level}).to_string(),
        )
        .await;
        for schema in &earlier {
            assert_eq!(api.register(&subject, schema).await.0, 200);
        }
        let (status, b) = api.register(&subject, &rejected_transitive).await;
        assert_eq!(status, 200, "{level}: {b}");
    }
    // The global default is BACKWARD.
    let (status, b) = api
        .register("default-value", &record(r#"{"name":"a","type":"long"}"#))
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = api
        .register(
            "default-value",
            &record(r#"{"name":"a","type":"long"},{"name":"z","type":"int"}"#),
        )
        .await;
    assert_eq!(status, 409, "{b}");
    assert!(b["message"].as_str().unwrap().contains("'z'"), "{b}");
}

#[tokio::test]
async fn compatibility_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = start(dir.path()).await;
    let v1 = record(r#"{"name":"a","type":"long"}"#);
    let good = record(r#"{"name":"a","type":"long"},{"name":"b","type":"int","default":1}"#);
    let bad = record(r#"{"name":"a","type":"long"},{"name":"b","type":"int"}"#);
    // Nothing to compare with: compatible.
    assert_eq!(
        api.post("/compatibility/subjects/s/versions/latest", &body(&bad))
            .await,
        (200, json!({"is_compatible": true}))
    );
    api.register("s", &v1).await;
    assert_eq!(
        api.post("/compatibility/subjects/s/versions/latest", &body(&good))
            .await,
        (200, json!({"is_compatible": true}))
    );
    assert_eq!(
        api.post("/compatibility/subjects/s/versions/1", &body(&bad))
            .await,
        (200, json!({"is_compatible": false}))
    );
    let (status, verbose) = api
        .post(
            "/compatibility/subjects/s/versions/latest?verbose=true",
            &body(&bad),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(verbose["is_compatible"], false);
    assert!(
        verbose["messages"][0].as_str().unwrap().contains("'b'"),
        "{verbose}"
    );
    let (status, b) = api
        .post("/compatibility/subjects/s/versions/9", &body(&good))
        .await;
    assert!(status == 404 && error(40402)(&b), "{b}");
    let (status, b) = api
        .post("/compatibility/subjects/s/versions/zero", &body(&good))
        .await;
    assert!(status == 422 && error(42202)(&b), "{b}");
    let (status, b) = api
        .post("/compatibility/subjects/s/versions/latest", &body("{bad"))
        .await;
    assert!(status == 422 && error(42201)(&b), "{b}");
    // Checking changes nothing.
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([1])));
}

#[tokio::test]
async fn config_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = start(dir.path()).await;
    assert_eq!(
        api.get("/config").await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(
        api.put("/config", r#"{"compatibility": "FULL"}"#).await,
        (200, json!({"compatibility": "FULL"}))
    );
    assert_eq!(
        api.get("/config").await,
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    let (status, b) = api.get("/config/s").await;
    assert_eq!(
        (status, b),
        (
            404,
            json!({"error_code": 40408, "message": "Subject 's' does not have subject-level compatibility configured"})
        )
    );
    assert_eq!(
        api.get("/config/s?defaultToGlobal=true").await,
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    assert_eq!(
        api.put("/config/s", r#"{"compatibility": "none"}"#).await,
        (200, json!({"compatibility": "NONE"}))
    );
    assert_eq!(
        api.get("/config/s").await,
        (200, json!({"compatibilityLevel": "NONE"}))
    );
    for bad in [r#"{"compatibility": "SIDEWAYS"}"#, "{}"] {
        let (status, b) = api.put("/config/s", bad).await;
        assert!(status == 422 && error(42203)(&b), "{b}");
    }
    let (status, b) = api.put("/config", "nope").await;
    assert!(status == 422 && error(422)(&b), "{b}");
    assert_eq!(
        api.delete("/config/s").await,
        (200, json!({"compatibilityLevel": "NONE"}))
    );
    assert_eq!(api.get("/config/s").await.0, 404);
    let (status, b) = api.delete("/config/s").await;
    assert!(status == 404 && error(40401)(&b), "{b}");
    assert_eq!(
        api.delete("/config").await,
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    assert_eq!(
        api.get("/config").await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(api.get("/mode").await, (200, json!({"mode": "READWRITE"})));
}

#[tokio::test]
async fn deleting_subjects_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = start(dir.path()).await;
    let v1 = record(r#"{"name":"a","type":"long"}"#);
    let v2 = record(r#"{"name":"a","type":"long"},{"name":"b","type":"int","default":1}"#);
    api.register("s", &v1).await;
    api.register("s", &v2).await;
    let (status, b) = api.delete("/subjects/s?permanent=true").await;
    assert!(status == 404 && error(40405)(&b), "{b}");
    assert_eq!(api.delete("/subjects/s").await, (200, json!([1, 2])));
    assert_eq!(api.get("/subjects").await, (200, json!([])));
    assert_eq!(api.get("/subjects?deleted=true").await, (200, json!(["s"])));
    assert_eq!(api.get("/subjects/s/versions").await.0, 404);
    assert_eq!(
        api.get("/subjects/s/versions?deleted=true").await,
        (200, json!([1, 2]))
    );
    assert_eq!(
        api.get("/subjects/s/versions/1?deleted=true").await.1["id"],
        1
    );
    let (status, b) = api.delete("/subjects/s").await;
    assert!(status == 404 && error(40404)(&b), "{b}");
    // Soft-deleted ids still resolve (old records stay decodable).
    assert_eq!(api.get("/schemas/ids/1").await.0, 200);
    // Registering again continues the version numbers and reuses the id.
    assert_eq!(api.register("s", &v2).await, (200, json!({"id": 2})));
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([3])));
    // Versions.
    assert_eq!(
        api.delete("/subjects/s/versions/latest").await,
        (200, json!(3))
    );
    let (status, b) = api.delete("/subjects/s/versions/3").await;
    assert!(status == 404 && error(40406)(&b), "{b}");
    let (status, b) = api.delete("/subjects/s/versions/8").await;
    assert!(status == 404 && error(40402)(&b), "{b}");
    assert_eq!(
        api.delete("/subjects/s/versions/3?permanent=true").await,
        (200, json!(3))
    );
    assert_eq!(
        api.delete("/subjects/s?permanent=true").await,
        (200, json!([1, 2]))
    );
    let (status, b) = api.delete("/subjects/s").await;
    assert!(status == 404 && error(40401)(&b), "{b}");
    // Permanently deleted: the ids no longer resolve.
    let (status, b) = api.get("/schemas/ids/1").await;
    assert!(status == 404 && error(40403)(&b), "{b}");
}

#[tokio::test]
async fn restart_keeps_ids_versions_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = record(r#"{"name":"a","type":"long"}"#);
    let v2 = record(r#"{"name":"a","type":"long"},{"name":"b","type":"int","default":1}"#);
    let v3 = record(r#"{"name":"a","type":"long"},{"name":"c","type":"int","default":1}"#);
    let (server, api) = start(dir.path()).await;
    api.register("x-value", &v1).await;
    api.register("y-value", &v2).await;
    api.register("x-value", &v2).await;
    api.put("/config/x-value", r#"{"compatibility": "FULL_TRANSITIVE"}"#)
        .await;
    api.put("/config", r#"{"compatibility": "FORWARD"}"#).await;
    api.delete("/subjects/y-value").await;
    server.shutdown().await.unwrap();

    let snapshot = |api: Api| async move {
        (
            api.get("/subjects?deleted=true").await,
            api.get("/subjects").await,
            api.get("/subjects/x-value/versions/2").await,
            api.get("/subjects/y-value/versions?deleted=true").await,
            api.get("/config").await,
            api.get("/config/x-value").await,
            api.get("/schemas/ids/2").await,
        )
    };
    let (server, api) = start(dir.path()).await;
    let before = snapshot(api).await;
    assert_eq!(
        before.2,
        (
            200,
            json!({"subject": "x-value", "version": 2, "id": 2, "schema": v2})
        )
    );
    assert_eq!(
        before.5,
        (200, json!({"compatibilityLevel": "FULL_TRANSITIVE"}))
    );
    server.shutdown().await.unwrap();

    // A crash mid-write leaves a torn last line: it is cut off at the next start.
    let log = dir.path().join("schemas.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 6);
    text.push_str(r#"{"op":"register","subj"#);
    std::fs::write(&log, &text).unwrap();
    let (server, api) = start(dir.path()).await;
    assert_eq!(snapshot(Api::new(server.url())).await, before);
    // New ids continue after the replayed ones.
    assert_eq!(api.register("z-value", &v3).await, (200, json!({"id": 3})));
    server.shutdown().await.unwrap();
    let (server, api) = start(dir.path()).await;
    assert_eq!(
        api.get("/schemas/ids/3").await,
        (200, json!({"schema": v3}))
    );
    server.shutdown().await.unwrap();

    // A corrupt line in the middle is refused with the file and line named.
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, format!("not json\n{text}")).unwrap();
    let err = RegistryServer::start(any_port(), dir.path())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("schemas.jsonl") && err.contains("line 1"),
        "{err}"
    );
}

fn client_config(url: &str) -> RegistryClientConfig {
    let mut config = RegistryClientConfig::new(url);
    config.retry = RetryPolicy {
        max_retries: 10,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    };
    config
}

#[tokio::test]
async fn client_registers_caches_and_reports_fatal_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start(dir.path()).await;
    let client = RegistryClient::new(client_config(&server.url())).unwrap();
    let topic = "shop.public.orders";
    let value_subject =
        SubjectNameStrategy::TopicName.subject(topic, SubjectKind::Value, "shop.Order");
    let key_subject = SubjectNameStrategy::TopicName.subject(topic, SubjectKind::Key, "shop.Key");
    assert_eq!(value_subject, "shop.public.orders-value");
    let v1 = record(r#"{"name":"id","type":"long"}"#);
    let key = r#"{"type":"record","name":"Key","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#;

    let id = client.register(&value_subject, &v1).await.unwrap();
    let key_id = client.register(&key_subject, key).await.unwrap();
    assert_ne!(id, key_id);
    // The hot path: no HTTP at all for a schema already registered.
    let served = server.request_count();
    for _ in 0..100 {
        assert_eq!(client.register(&value_subject, &v1).await.unwrap(), id);
    }
    assert_eq!(client.cached_id(&value_subject, &v1), Some(id));
    assert_eq!(&*client.schema_by_id(id).await.unwrap(), v1.as_str());
    assert_eq!(server.request_count(), served);
    // Someone else's id: fetched once, then cached.
    let (_, other) = api
        .register("other-value", &record(r#"{"name":"q","type":"int"}"#))
        .await;
    let other = other["id"].as_u64().unwrap() as u32;
    let served = server.request_count();
    let text = client.schema_by_id(other).await.unwrap();
    assert_eq!(&*client.schema_by_id(other).await.unwrap(), &*text);
    assert_eq!(server.request_count(), served + 1);

    assert_eq!(client.latest_version(&value_subject).await.unwrap().id, id);
    assert_eq!(
        client.compatibility(&value_subject).await.unwrap(),
        CompatibilityLevel::Backward
    );
    client
        .set_compatibility(Some(&value_subject), CompatibilityLevel::Full)
        .await
        .unwrap();
    assert_eq!(
        client.compatibility(&value_subject).await.unwrap(),
        CompatibilityLevel::Full
    );
    client
        .set_compatibility(Some(&value_subject), CompatibilityLevel::Backward)
        .await
        .unwrap();

    // 409: fatal (no retry), names the subject, the change, the level and the fix.
    let incompatible = record(r#"{"name":"id","type":"long"},{"name":"email","type":"string"}"#);
    let sent = client.requests_sent();
    let err = client
        .register(&value_subject, &incompatible)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err:?}");
    let message = err.to_string();
    for needle in [
        value_subject.as_str(),
        "'email'",
        "BACKWARD",
        "NONE",
        &server.url(),
    ] {
        assert!(message.contains(needle), "{needle} missing from: {message}");
    }
    assert_eq!(
        client.requests_sent(),
        sent + 2,
        "one register + one config lookup"
    );
    // 422: fatal.
    let err = client
        .register(&value_subject, r#"{"type":"record"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidSchema { code: 42201, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&value_subject));
    // Unknown id.
    let err = client.schema_by_id(4242).await.unwrap_err();
    assert_eq!(err.error_code(), Some(40403), "{err}");
}

#[tokio::test]
async fn client_retries_while_the_registry_is_briefly_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = RegistryServer::start(any_port(), dir.path()).await.unwrap();
    let addr = server.local_addr();
    server.shutdown().await.unwrap();
    let data = dir.path().to_owned();
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        RegistryServer::start(addr, &data).await.unwrap()
    });
    let client = RegistryClient::new(client_config(&format!("http://{addr}"))).unwrap();
    let started = Instant::now();
    let id = client
        .register("late-value", &record(r#"{"name":"a","type":"long"}"#))
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert!(client.requests_sent() >= 2, "{}", client.requests_sent());
    assert!(started.elapsed() < Duration::from_secs(10));
    restart.await.unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn client_gives_up_after_bounded_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = RegistryClientConfig::new(format!("http://127.0.0.1:{port}"));
    config.retry = RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    };
    let client = RegistryClient::new(config).unwrap();
    let started = Instant::now();
    let err = client
        .register("s", &record(r#"{"name":"a","type":"long"}"#))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unavailable { attempts: 4, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(client.requests_sent(), 4);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A stand-in registry whose handler decides each answer; counts requests.
async fn fake_registry<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, &axum::http::HeaderMap) -> (u16, Value) + Clone + Send + Sync + 'static,
{
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let answer = answer.clone();
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let (status, body) = answer(n, &headers);
            if status == 0 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let status = axum::http::StatusCode::from_u16(status.max(200)).unwrap();
            (status, [("content-type", CT)], body.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

#[tokio::test]
async fn client_retries_5xx_then_succeeds_and_times_out_slow_answers() {
    let (url, count) = fake_registry(|n, _| {
        if n < 2 {
            (500, json!({"error_code": 50001, "message": "store down"}))
        } else {
            (200, json!({"id": 42}))
        }
    })
    .await;
    let client = RegistryClient::new(client_config(&url)).unwrap();
    assert_eq!(client.register("s", "\"string\"").await.unwrap(), 42);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (url, _) = fake_registry(|_, _| (0, json!({"id": 1}))).await;
    let mut config = RegistryClientConfig::new(url);
    config.request_timeout = Duration::from_millis(200);
    config.retry = RetryPolicy::none();
    let err = RegistryClient::new(config)
        .unwrap()
        .register("s", "\"string\"")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unavailable { attempts: 1, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_sends_basic_auth_and_never_shows_the_password() {
    let (url, _) = fake_registry(|_, headers| match headers.get("authorization") {
        // base64("walcast:s3cret")
        Some(v) if v == "Basic d2FsY2FzdDpzM2NyZXQ=" => (200, json!({"id": 7})),
        _ => (401, json!({"error_code": 401, "message": "Unauthorized"})),
    })
    .await;
    let mut config = RegistryClientConfig::new(url.clone());
    config.username = Some("walcast".into());
    config.password = Some(Secret::new("s3cret"));
    let client = RegistryClient::new(config.clone()).unwrap();
    assert_eq!(client.register("s", "\"string\"").await.unwrap(), 7);
    assert!(!format!("{client:?} {config:?}").contains("s3cret"));

    config.password = Some(Secret::new("wrong-pw"));
    let err = RegistryClient::new(config)
        .unwrap()
        .register("s", "\"string\"")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-pw"));
    // Credentials in the URL work too, and stay out of messages.
    let with_user = url.replace("http://", "http://walcast:s3cret@");
    let client = RegistryClient::new(RegistryClientConfig::new(with_user)).unwrap();
    assert_eq!(client.register("s", "\"string\"").await.unwrap(), 7);
    assert!(!client.url().contains("s3cret"));
}

mod tls {
    //! A TLS registry stand-in with a certificate from a throwaway CA.

    use std::pin::Pin;

    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
    use openssl::x509::extension::{
        BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    };
    use openssl::x509::{X509Name, X509};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_openssl::SslStream;

    fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn cert(
        cn: &str,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
        serial: u32,
    ) -> X509 {
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(issuer.map_or(name.as_ref(), |(c, _)| c.subject_name()))
            .unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        if issuer.is_none() {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        } else {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
        b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
            .unwrap();
        b.build()
    }

    pub struct Listener {
        tcp: TcpListener,
        acceptor: SslAcceptor,
    }

    impl axum::serve::Listener for Listener {
        type Io = SslStream<TcpStream>;
        type Addr = std::net::SocketAddr;
        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let Ok((tcp, addr)) = self.tcp.accept().await else {
                    continue;
                };
                let Ok(mut stream) =
                    SslStream::new(Ssl::new(self.acceptor.context()).unwrap(), tcp)
                else {
                    continue;
                };
                if Pin::new(&mut stream).accept().await.is_ok() {
                    return (stream, addr);
                }
            }
        }
        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }

    /// A listener on 127.0.0.1 with a CA-signed certificate, and the CA's PEM.
    pub async fn listener() -> (Listener, Vec<u8>) {
        let ca_key = key();
        let ca = cert("walcast test CA", &ca_key, None, 1);
        let server_key = key();
        let server = cert("127.0.0.1", &server_key, Some((&ca, &ca_key)), 2);
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_private_key(&server_key).unwrap();
        acceptor.set_certificate(&server).unwrap();
        acceptor.check_private_key().unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (
            Listener {
                tcp,
                acceptor: acceptor.build(),
            },
            ca.to_pem().unwrap(),
        )
    }
}

#[tokio::test]
async fn client_trusts_a_custom_ca() {
    let (listener, ca_pem) = tls::listener().await;
    let url = format!(
        "https://{}",
        axum::serve::Listener::local_addr(&listener).unwrap()
    );
    let app = axum::Router::new().fallback(|| async { ([("content-type", CT)], r#"{"id": 9}"#) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    let mut config = RegistryClientConfig::new(url.clone());
    config.retry = RetryPolicy::none();
    let err = RegistryClient::new(config.clone())
        .unwrap()
        .register("s", "\"string\"")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unavailable { .. }),
        "untrusted certificate accepted: {err:?}"
    );

    config.ca_file = Some(ca_file);
    let client = RegistryClient::new(config.clone()).unwrap();
    assert_eq!(client.register("s", "\"string\"").await.unwrap(), 9);

    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    config.ca_file = Some(bad);
    let err = RegistryClient::new(config.clone()).unwrap_err();
    assert!(matches!(err, RegistryError::CaFile { .. }), "{err:?}");
    config.ca_file = Some(dir.path().join("missing.pem"));
    assert!(err.to_string().contains("bad.pem"));
    assert!(matches!(
        RegistryClient::new(config).unwrap_err(),
        RegistryError::CaFile { .. }
    ));
}

const PYTHON_CLIENT: &str = r#"
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField

url, schema_str, incompatible = sys.argv[1], sys.argv[2], sys.argv[3]
client = SchemaRegistryClient({"url": url})
out = {}
out["id"] = client.register_schema("py-orders-value", Schema(schema_str, "AVRO"))
out["fetched"] = client.get_schema(out["id"]).schema_str
latest = client.get_latest_version("py-orders-value")
out["latest"] = [latest.schema_id, latest.version, latest.subject]
out["lookup_version"] = client.lookup_schema("py-orders-value", Schema(schema_str, "AVRO")).version
out["subjects"] = client.get_subjects()
out["versions"] = client.get_versions("py-orders-value")
client.set_compatibility("py-orders-value", "FULL")
out["compatibility"] = client.get_compatibility("py-orders-value")
out["compatible"] = client.test_compatibility("py-orders-value", Schema(schema_str, "AVRO"))
try:
    client.register_schema("py-orders-value", Schema(incompatible, "AVRO"))
    out["incompatible"] = None
except SchemaRegistryError as e:
    out["incompatible"] = [e.http_status_code, e.error_code]

ctx = SerializationContext("py-orders", MessageField.VALUE)
data = AvroSerializer(client, schema_str)({"id": 7, "note": "hello"}, ctx)
out["wire"] = [data[0], int.from_bytes(data[1:5], "big")]
out["decoded"] = AvroDeserializer(SchemaRegistryClient({"url": url}))(data, ctx)
out["deleted"] = client.delete_subject("py-orders-value")
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_python_client_works_against_the_dev_registry() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!(
            "note: python3 with confluent_kafka is not installed; skipping the Python client check"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _api) = start(dir.path()).await;
    let schema = record(
        r#"{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}"#,
    );
    // The Rust client registers first under its own subject: ids are global, so Python's
    // registration of the same schema under another subject must get the same id.
    let client = RegistryClient::new(client_config(&server.url())).unwrap();
    let id = client.register("rust-orders-value", &schema).await.unwrap();
    let incompatible = record(r#"{"name":"id","type":"string"}"#);
    let (url, schema_arg) = (server.url(), schema.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", PYTHON_CLIENT, &url, &schema_arg, &incompatible])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed (with confluent_kafka installed, its schema registry extras \
         are needed too: pip install 'confluent-kafka[avro,schemaregistry]'):\n{stderr}"
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["id"], id);
    assert_eq!(out["fetched"], schema);
    assert_eq!(out["latest"], json!([id, 1, "py-orders-value"]));
    assert_eq!(out["lookup_version"], 1);
    assert_eq!(
        out["subjects"],
        json!(["py-orders-value", "rust-orders-value"])
    );
    assert_eq!(out["versions"], json!([1]));
    assert_eq!(out["compatibility"], "FULL");
    assert_eq!(out["compatible"], true);
    assert_eq!(out["incompatible"], json!([409, 409]));
    // The serializer registered under py-orders-value (TopicNameStrategy): the same id.
    assert_eq!(out["wire"], json!([0, id]));
    assert_eq!(out["decoded"], json!({"id": 7, "note": "hello"}));
    assert_eq!(out["deleted"], json!([1]));
    server.shutdown().await.unwrap();
}
