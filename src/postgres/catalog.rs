//! What the database holds that a connector refers to: tables, their columns, keys,
//! replica identity and privileges; and which configured rule captures which table.

use crate::model::relation::ReplicaIdentity;
use tokio_postgres::Client;

use crate::config::{Connector, TableRule};

/// One table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub primary_key: Vec<String>,
    pub columns: Vec<String>,
    pub is_partition: bool,
    /// A partitioned table (its rows live in partitions).
    pub is_partitioned: bool,
    /// The current user owns it (or is a member of its owner): needed to publish it.
    pub owned: bool,
    pub can_select: bool,
}

impl CatalogTable {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Every user table of the database, loaded in one query.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub tables: Vec<CatalogTable>,
}

const TABLES_SQL: &str = "
SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text, c.relispartition,
       pg_has_role(c.relowner, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT'),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum),
       ARRAY(SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = c.oid AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum)),
       c.relkind = 'p'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname";

impl Catalog {
    pub async fn load(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let rows = client.query(TABLES_SQL, &[]).await?;
        let tables = rows
            .iter()
            .map(|r| {
                Ok(CatalogTable {
                    oid: r.try_get(0)?,
                    schema: r.try_get(1)?,
                    name: r.try_get(2)?,
                    replica_identity: ReplicaIdentity::from_relreplident(r.try_get(3)?),
                    is_partition: r.try_get(4)?,
                    owned: r.try_get(5)?,
                    can_select: r.try_get(6)?,
                    columns: r.try_get(7)?,
                    primary_key: r.try_get(8)?,
                    is_partitioned: r.try_get(9)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(Self { tables })
    }
}

/// A table walcast captures, with the rule that says how.
#[derive(Debug, Clone, Copy)]
pub struct CapturedTable<'a> {
    pub table: &'a CatalogTable,
    pub rule: &'a TableRule,
}

/// The outcome of matching a connector's rules against the catalog.
#[derive(Debug)]
pub struct Resolution<'a> {
    pub captured: Vec<CapturedTable<'a>>,
    /// Rules that matched nothing: an exact name that does not exist, or an empty pattern.
    pub unmatched: Vec<&'a TableRule>,
}

/// Assigns each table the first rule that applies (exact names come first). Patterns
/// skip partitions (their root is captured) and walcast's own schema.
pub fn resolve_tables<'a>(connector: &'a Connector, catalog: &'a Catalog) -> Resolution<'a> {
    let mut used = vec![false; connector.tables.len()];
    let mut captured = Vec::new();
    for table in &catalog.tables {
        let found = connector.tables.iter().enumerate().find(|(_, rule)| {
            rule.applies_to(&table.schema, &table.name)
                && (rule.selector.is_exact() || (!table.is_partition && table.schema != "walcast"))
        });
        if let Some((i, rule)) = found {
            used[i] = true;
            captured.push(CapturedTable { table, rule });
        }
    }
    // A pattern whose every match was taken by an exact entry still matched something.
    for (i, rule) in connector.tables.iter().enumerate() {
        if !used[i] && !rule.selector.is_exact() {
            used[i] = catalog.tables.iter().any(|t| {
                rule.applies_to(&t.schema, &t.name) && !t.is_partition && t.schema != "walcast"
            });
        }
    }
    let unmatched = connector
        .tables
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(r, _)| r)
        .collect();
    Resolution {
        captured,
        unmatched,
    }
}
