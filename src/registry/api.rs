//! The wire shapes of Confluent's Schema Registry REST API shared by the dev server and
//! the client: error bodies, error codes, version ids and the register request; no I/O.

use serde::{Deserialize, Serialize};

/// The content type of every response (requests may also use `application/json`).
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Confluent's error codes (`io.confluent.kafka.schemaregistry.rest.exceptions.Errors`).
pub mod codes {
    pub const SUBJECT_NOT_FOUND: u32 = 40401;
    pub const VERSION_NOT_FOUND: u32 = 40402;
    pub const SCHEMA_NOT_FOUND: u32 = 40403;
    pub const SUBJECT_SOFT_DELETED: u32 = 40404;
    pub const SUBJECT_NOT_SOFT_DELETED: u32 = 40405;
    pub const VERSION_SOFT_DELETED: u32 = 40406;
    pub const VERSION_NOT_SOFT_DELETED: u32 = 40407;
    pub const SUBJECT_COMPATIBILITY_NOT_CONFIGURED: u32 = 40408;
    /// Confluent Platform up to 7.x answers an incompatible schema with error code 409
    /// (newer releases use 40901); the HTTP status is 409 either way.
    pub const INCOMPATIBLE_SCHEMA: u32 = 409;
    pub const INVALID_SCHEMA: u32 = 42201;
    pub const INVALID_VERSION: u32 = 42202;
    pub const INVALID_COMPATIBILITY_LEVEL: u32 = 42203;
    /// A request body that is not the JSON the endpoint expects.
    pub const UNPROCESSABLE_ENTITY: u32 = 422;
    pub const STORE_ERROR: u32 = 50001;
}

/// `{"error_code": 40401, "message": "..."}`: every error response's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: u32,
    pub message: String,
}

/// An error answer: the HTTP status and Confluent's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    /// An error whose HTTP status follows from its code (40401 → 404, 42201 → 422, ...).
    pub fn new(error_code: u32, message: impl Into<String>) -> Self {
        let status = match error_code {
            100..=599 => error_code as u16,
            c => (c / 100) as u16,
        };
        Self {
            status,
            body: ErrorBody {
                error_code,
                message: message.into(),
            },
        }
    }

    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(
            codes::SUBJECT_NOT_FOUND,
            format!("Subject '{subject}' not found."),
        )
    }
    pub fn version_not_found(version: u32) -> Self {
        Self::new(
            codes::VERSION_NOT_FOUND,
            format!("Version {version} not found."),
        )
    }
    pub fn schema_not_found() -> Self {
        Self::new(codes::SCHEMA_NOT_FOUND, "Schema not found")
    }
    pub fn schema_id_not_found(id: u32) -> Self {
        Self::new(codes::SCHEMA_NOT_FOUND, format!("Schema {id} not found"))
    }
    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            codes::SUBJECT_SOFT_DELETED,
            format!(
                "Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
            ),
        )
    }
    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            codes::SUBJECT_NOT_SOFT_DELETED,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }
    pub fn version_soft_deleted(subject: &str, version: u32) -> Self {
        Self::new(
            codes::VERSION_SOFT_DELETED,
            format!(
                "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to \
                 delete permanently"
            ),
        )
    }
    pub fn version_not_soft_deleted(subject: &str, version: u32) -> Self {
        Self::new(
            codes::VERSION_NOT_SOFT_DELETED,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being \
                 permanently deleted"
            ),
        )
    }
    pub fn subject_compatibility_not_configured(subject: &str) -> Self {
        Self::new(
            codes::SUBJECT_COMPATIBILITY_NOT_CONFIGURED,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }
    pub fn invalid_schema(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_SCHEMA, message)
    }
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            codes::INVALID_VERSION,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values \
                 are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }
    pub fn invalid_compatibility_level() -> Self {
        Self::new(
            codes::INVALID_COMPATIBILITY_LEVEL,
            "Invalid compatibility level. Valid values are none, backward, forward, full, \
             backward_transitive, forward_transitive, and full_transitive",
        )
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(codes::UNPROCESSABLE_ENTITY, message)
    }
    pub fn store(message: impl Into<String>) -> Self {
        Self::new(codes::STORE_ERROR, message)
    }
}

/// A version in a path: a number in [1, 2^31-1], or `latest` (also written `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionId {
    Latest,
    Number(u32),
}

impl VersionId {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("latest") {
            return Ok(Self::Latest);
        }
        match trimmed.parse::<i64>() {
            Ok(-1) => Ok(Self::Latest),
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(Self::Number(n as u32)),
            _ => Err(ApiError::invalid_version(text)),
        }
    }
}

/// The body of `POST /subjects/{s}/versions`, `POST /subjects/{s}` and the compatibility
/// checks. Unknown properties are ignored, as Confluent's clients ask with
/// `Confluent-Accept-Unknown-Properties`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<serde_json::Value>>,
}

/// A registered schema as `GET /subjects/{s}/versions/{v}` and `POST /subjects/{s}` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_code() {
        assert_eq!(ApiError::subject_not_found("s").status, 404);
        assert_eq!(ApiError::invalid_schema("x").status, 422);
        assert_eq!(ApiError::unprocessable("x").status, 422);
        assert_eq!(ApiError::new(codes::INCOMPATIBLE_SCHEMA, "x").status, 409);
        assert_eq!(ApiError::store("x").status, 500);
    }

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(VersionId::parse("latest").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse(" LATEST ").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse("-1").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse("3").unwrap(), VersionId::Number(3));
        for bad in ["0", "-2", "x", "2147483648", ""] {
            assert_eq!(VersionId::parse(bad).unwrap_err().body.error_code, 42202);
        }
    }
}
