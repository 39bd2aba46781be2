//! A table as the replication stream describes it: its columns, their resolved types
//! and its replica identity. Built by the source's relation cache, read by the codec
//! and the run loop.

use std::sync::Arc;

use super::types::{builtin, PgType};

/// `pg_class.relreplident`: what PostgreSQL writes to the WAL as the old row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// The primary key's columns (nothing if there is no primary key).
    Default,
    /// No old row: updates and deletes on a published table fail.
    Nothing,
    /// The whole old row.
    Full,
    /// The columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// From `pg_class.relreplident`'s one-letter code.
    pub fn from_relreplident(code: &str) -> Self {
        match code {
            "n" => Self::Nothing,
            "f" => Self::Full,
            "i" => Self::Index,
            _ => Self::Default,
        }
    }
}

/// A column type, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub oid: u32,
    /// `schema.name` for user types, the plain name for built-ins.
    pub name: String,
    pub pg_type: PgType,
    /// An enum's labels in sort order (also for arrays of enums).
    pub enum_labels: Option<Vec<String>>,
}

impl TypeInfo {
    /// A built-in type, known by its OID without asking the catalog.
    pub fn builtin(oid: u32) -> Option<Self> {
        builtin(oid).map(|pg_type| TypeInfo {
            oid,
            name: pg_type.name().to_owned(),
            pg_type,
            enum_labels: None,
        })
    }
}

/// One column of a relation.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub type_info: Arc<TypeInfo>,
    /// `atttypmod`: length, precision/scale or -1.
    pub type_modifier: i32,
    /// Part of the replica identity key.
    pub is_key: bool,
    /// `NOT NULL` in the catalog when the relation was described (schemas mark such
    /// columns required, as Debezium does).
    pub not_null: bool,
    /// The column default as the catalog prints it (`pg_get_expr`), for the schema's
    /// field default, as Debezium derives it.
    pub default_expr: Option<String>,
}

impl ColumnInfo {
    /// A nullable, non-key column of built-in type `oid` without modifier or default
    /// (what tests and fixtures start from).
    pub fn of_builtin(name: &str, oid: u32) -> Option<Self> {
        Some(ColumnInfo {
            name: name.to_owned(),
            type_info: Arc::new(TypeInfo::builtin(oid)?),
            type_modifier: -1,
            is_key: false,
            not_null: false,
            default_expr: None,
        })
    }
}

/// A table as the stream describes it now.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationInfo {
    pub oid: u32,
    pub schema: String,
    pub table: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<ColumnInfo>,
    /// The table's shape as a number ([`RelationInfo::shape_version`]): equal shapes
    /// have equal versions whichever cache described them (a reader after a reconnect,
    /// the initial or an incremental snapshot), so what is keyed by (oid, version)
    /// stays right. A count per cache was not: after a reconnect a new reader's
    /// version 1 could be another shape than the event stage's version 1.
    pub version: u64,
}

impl RelationInfo {
    /// A fingerprint of everything `same_shape` compares (deterministic within
    /// the process, which is all that keys on it).
    pub fn shape_version(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!(
            "{:?}",
            (
                &self.schema,
                &self.table,
                &self.replica_identity,
                &self.columns
            )
        )
        .hash(&mut h);
        h.finish()
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// Same columns, names, types and keys: the schema a consumer sees is unchanged.
    pub(crate) fn same_shape(&self, other: &RelationInfo) -> bool {
        self.schema == other.schema
            && self.table == other.table
            && self.replica_identity == other.replica_identity
            && self.columns == other.columns
    }
}
