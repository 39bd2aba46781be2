//! The relation cache: what each table looks like in the stream (from Relation
//! messages), with every column's type resolved to how its values are parsed.
//!
//! Built-in types are known by OID. Others (enums, domains, arrays of them, extension
//! types such as hstore and citext, composites) are looked up once in the catalog over
//! an ordinary SQL connection and cached. A Relation message that changes a table's
//! columns or types starts a new table version, which later becomes a new schema.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;

use super::pgoutput::Relation;
use crate::model::relation::{ColumnInfo, RelationInfo, ReplicaIdentity, TypeInfo};
use crate::model::types::{from_type_name, PgType};

/// Why a type or relation could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve the type of a column (oid {oid}): {detail}")]
pub struct RelationError {
    pub oid: u32,
    pub detail: String,
}

/// Relations by OID, and resolved types.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<RelationInfo>>,
    types: HashMap<u32, Arc<TypeInfo>>,
    /// Names from Type messages, used when the catalog can't be asked.
    type_names: HashMap<u32, (String, String)>,
}

const TYPE_SQL: &str = "
SELECT t.typname::text, n.nspname::text, t.typtype::text, t.typbasetype, t.typelem, t.typcategory::text,
       CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END,
       CASE WHEN t.typtype = 'r' THEN (SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid) END,
       CASE WHEN t.typtype = 'm' THEN (SELECT r.rngsubtype FROM pg_range r WHERE r.rngmultitypid = t.oid) END
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = $1";

impl RelationCache {
    pub fn get(&self, oid: u32) -> Option<&Arc<RelationInfo>> {
        self.relations.get(&oid)
    }

    /// Remembers a Type message's name (sent before a Relation that uses a non-built-in type).
    pub fn note_type(&mut self, oid: u32, namespace: &str, name: &str) {
        self.type_names
            .insert(oid, (namespace.to_owned(), name.to_owned()));
    }

    /// Applies a Relation message; returns the relation and whether its shape changed
    /// (a new version) compared with what was cached.
    pub async fn apply(
        &mut self,
        message: &Relation,
        catalog: &Client,
    ) -> Result<(Arc<RelationInfo>, bool), RelationError> {
        // NOT NULL, defaults and the primary key are not in the Relation message: read
        // them from the catalog (as of now, which matches the stream except across
        // concurrent DDL).
        type Attribute = (bool, Option<String>, bool);
        let attributes: std::collections::HashMap<String, Attribute> = catalog
            .query(
                "SELECT a.attname::text, a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey))
                 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&message.oid],
            )
            .await
            .map_err(|e| RelationError { oid: message.oid, detail: e.to_string() })?
            .iter()
            .filter_map(|r| {
                Some((
                    r.try_get::<_, String>(0).ok()?,
                    (r.try_get(1).ok()?, r.try_get(2).ok()?, r.try_get(3).ok()?),
                ))
            })
            .collect();
        let full = message.replica_identity == b'f';
        let mut columns = Vec::with_capacity(message.columns.len());
        for c in &message.columns {
            let (not_null, default_expr, primary) = attributes
                .get(&c.name)
                .cloned()
                .unwrap_or((false, None, false));
            columns.push(ColumnInfo {
                name: c.name.clone(),
                type_info: self.resolve(c.type_oid, catalog).await?,
                type_modifier: c.type_modifier,
                // With REPLICA IDENTITY FULL pgoutput flags every column; the key is
                // still the primary key, as Debezium keys such a table (none: a null key).
                is_key: if full { primary } else { c.is_key() },
                not_null,
                default_expr,
            });
        }
        let mut info = RelationInfo {
            oid: message.oid,
            schema: if message.namespace.is_empty() {
                "pg_catalog".into()
            } else {
                message.namespace.clone()
            },
            table: message.name.clone(),
            replica_identity: match message.replica_identity {
                b'n' => ReplicaIdentity::Nothing,
                b'f' => ReplicaIdentity::Full,
                b'i' => ReplicaIdentity::Index,
                _ => ReplicaIdentity::Default,
            },
            columns,
            version: 0,
        };
        info.version = info.shape_version();
        let changed = match self.relations.get(&message.oid) {
            Some(old) if old.same_shape(&info) => return Ok((old.clone(), false)),
            Some(_) => true,
            None => false,
        };
        let info = Arc::new(info);
        self.relations.insert(message.oid, info.clone());
        Ok((info, changed))
    }

    /// Resolves a type OID: built-in table first, then the cache, then the catalog.
    pub async fn resolve(
        &mut self,
        oid: u32,
        catalog: &Client,
    ) -> Result<Arc<TypeInfo>, RelationError> {
        if let Some(t) = self.types.get(&oid) {
            return Ok(t.clone());
        }
        let info = match TypeInfo::builtin(oid) {
            Some(info) => info,
            None => Box::pin(self.lookup(oid, catalog)).await?,
        };
        let info = Arc::new(info);
        self.types.insert(oid, info.clone());
        Ok(info)
    }

    async fn lookup(&mut self, oid: u32, catalog: &Client) -> Result<TypeInfo, RelationError> {
        let err = |detail: String| RelationError { oid, detail };
        let row = catalog
            .query_opt(TYPE_SQL, &[&oid])
            .await
            .map_err(|e| err(e.to_string()))?;
        let Some(row) = row else {
            // Dropped since (or never visible): fall back to the Type message's name.
            let name = self
                .type_names
                .get(&oid)
                .map(|(n, t)| format!("{n}.{t}"))
                .unwrap_or_else(|| format!("oid {oid}"));
            return Ok(TypeInfo {
                oid,
                name,
                pg_type: PgType::Unknown,
                enum_labels: None,
            });
        };
        let get = |i: usize| -> Result<String, RelationError> {
            row.try_get::<_, String>(i).map_err(|e| err(e.to_string()))
        };
        let typname = get(0)?;
        let schema = get(1)?;
        let typtype = get(2)?;
        let base: u32 = row.try_get(3).map_err(|e| err(e.to_string()))?;
        let elem: u32 = row.try_get(4).map_err(|e| err(e.to_string()))?;
        let category = get(5)?;
        let labels: Option<Vec<String>> = row.try_get(6).map_err(|e| err(e.to_string()))?;
        let range_sub: Option<u32> = row.try_get(7).map_err(|e| err(e.to_string()))?;
        let multirange_sub: Option<u32> = row.try_get(8).map_err(|e| err(e.to_string()))?;
        let name = if schema == "pg_catalog" {
            typname.clone()
        } else {
            format!("{schema}.{typname}")
        };

        let (pg_type, enum_labels) = match typtype.as_str() {
            "e" => (PgType::Enum, labels),
            "d" => {
                // A domain parses as its base type.
                let base = Box::pin(self.resolve(base, catalog)).await?;
                (base.pg_type.clone(), base.enum_labels.clone())
            }
            "c" => (PgType::Composite, None),
            "r" => {
                let sub = match range_sub {
                    Some(s) => Box::pin(self.resolve(s, catalog)).await?.pg_type.clone(),
                    None => PgType::Unknown,
                };
                (PgType::Range(Box::new(sub)), None)
            }
            "m" => {
                let sub = match multirange_sub {
                    Some(s) => Box::pin(self.resolve(s, catalog)).await?.pg_type.clone(),
                    None => PgType::Unknown,
                };
                (PgType::Multirange(Box::new(sub)), None)
            }
            _ if category == "A" && elem != 0 => {
                let element = Box::pin(self.resolve(elem, catalog)).await?;
                (
                    PgType::Array(Box::new(element.pg_type.clone())),
                    element.enum_labels.clone(),
                )
            }
            _ => (from_type_name(&typname).unwrap_or(PgType::Unknown), None),
        };
        Ok(TypeInfo {
            oid,
            name,
            pg_type,
            enum_labels,
        })
    }
}
