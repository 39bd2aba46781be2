//! `walcast setup`: prepares a database for a connector: walcast's support tables
//! (tracked migrations), the publication, and grants. Safe to run any number of times.

pub mod migrations;
pub mod publication;

use std::fmt;

use crate::config::Connector;
use crate::postgres::{connect, quote_ident, quote_table, resolve_tables, Catalog};

pub use migrations::{Applied, Migration};
pub use publication::PublicationSync;

/// Options of one `setup` run.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// Also create the demo inventory schema.
    pub demo: bool,
    /// Connect as this user (a table owner or superuser) instead of the connector's,
    /// and grant the connector's user what it needs.
    pub admin_user: Option<String>,
    /// That user's password.
    pub admin_password: Option<String>,
}

/// One line of what setup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step(pub String);

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Applies migrations, syncs the publication and (with an admin user) grants access.
pub async fn setup(connector: &Connector, options: &SetupOptions) -> Result<Vec<Step>, SetupError> {
    let err = |e: &dyn fmt::Display| SetupError(e.to_string());
    let admin = options
        .admin_user
        .as_deref()
        .map(|u| (u, options.admin_password.as_deref()));
    let mut client = connect(&connector.source, admin)
        .await
        .map_err(|e| err(&e))?;
    let mut steps = Vec::new();

    let mut sets = vec![migrations::SUPPORT];
    if options.demo {
        sets.push(migrations::DEMO);
    }
    for applied in migrations::apply(&mut client, &sets)
        .await
        .map_err(|e| err(&e))?
    {
        steps.push(Step(match applied {
            Applied::Now(id) => format!("applied migration {id}"),
            Applied::Already(id) => format!("migration {id} already applied"),
        }));
    }

    steps.push(Step(match publication::sync(connector, &client).await.map_err(|e| err(&e))? {
        PublicationSync::Created { tables } => format!("created publication {} for {tables} table(s)", connector.source.publication),
        PublicationSync::Updated { tables } => format!("updated publication {} to {tables} table(s)", connector.source.publication),
        PublicationSync::UpToDate { tables } => format!("publication {} is up to date ({tables} table(s))", connector.source.publication),
        PublicationSync::NotManaged => format!("publication {} is not managed by walcast (publication_mode = \"existing\"); left as is", connector.source.publication),
    }));

    if let Some(admin_user) = &options.admin_user {
        if *admin_user != connector.source.user {
            steps.extend(grant(connector, &client).await.map_err(|e| err(&e))?);
        }
    }
    Ok(steps)
}

/// Grants the connector's user read access to its tables and use of walcast's tables.
async fn grant(
    connector: &Connector,
    client: &tokio_postgres::Client,
) -> Result<Vec<Step>, String> {
    let db = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    };
    let user = quote_ident(&connector.source.user);
    let catalog = Catalog::load(client).await.map_err(db)?;
    let resolution = resolve_tables(connector, &catalog);
    let tables: Vec<String> = resolution
        .captured
        .iter()
        .map(|c| quote_table(&c.table.schema, &c.table.name))
        .collect();
    let mut statements = vec![
        format!("GRANT USAGE ON SCHEMA walcast TO {user}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON walcast.heartbeat, walcast.signal, walcast.connector_state TO {user}"
        ),
    ];
    let schemas: std::collections::BTreeSet<&str> = resolution
        .captured
        .iter()
        .map(|c| c.table.schema.as_str())
        .collect();
    for schema in schemas {
        statements.push(format!(
            "GRANT USAGE ON SCHEMA {} TO {user}",
            quote_ident(schema)
        ));
    }
    if !tables.is_empty() {
        statements.push(format!("GRANT SELECT ON {} TO {user}", tables.join(", ")));
    }
    for statement in &statements {
        client
            .execute(statement.as_str(), &[])
            .await
            .map_err(|e| format!("{statement} failed: {}", db(e)))?;
    }
    Ok(vec![Step(format!(
        "granted {} SELECT on {} captured table(s) and use of walcast's tables",
        connector.source.user,
        tables.len()
    ))])
}
