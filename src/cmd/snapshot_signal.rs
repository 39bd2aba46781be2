//! `walcast snapshot`: asks a running connector to act by inserting a row into
//! `walcast.signal` (Debezium's signal table layout). The row travels to the connector
//! through its replication stream, so the request is ordered with the changes around it
//! and survives a connector restart (it is in the WAL until the slot passes it).

use crate::config::Connector;
use crate::postgres::connect;

/// What to ask of the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// An incremental snapshot of these tables (`schema.table`).
    Snapshot(Vec<String>),
    Pause,
    Resume,
    Stop,
}

impl Signal {
    fn kind(&self) -> &'static str {
        match self {
            Self::Snapshot(_) => "execute-snapshot",
            Self::Pause => "pause-snapshot",
            Self::Resume => "resume-snapshot",
            Self::Stop => "stop-snapshot",
        }
    }

    fn data(&self) -> Option<String> {
        match self {
            Self::Snapshot(tables) => Some(
                serde_json::json!({ "data-collections": tables, "type": "incremental" })
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// Inserts the signal row; returns its id.
pub async fn send(connector: &Connector, signal: &Signal) -> Result<String, String> {
    let client = connect(&connector.source, None).await.map_err(|e| {
        format!(
            "cannot connect to {}: {e}",
            connector.source.display_target()
        )
    })?;
    let id = format!(
        "cli-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        std::process::id()
    );
    client
        .execute(
            "INSERT INTO walcast.signal (id, type, data) VALUES ($1, $2, $3)",
            &[&id, &signal.kind(), &signal.data()],
        )
        .await
        .map_err(|e| {
            format!(
                "cannot insert into walcast.signal: {}; run walcast setup {} (it creates the table, publishes it and grants INSERT)",
                e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                connector.file.display()
            )
        })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_signals_use_debeziums_layout() {
        let s = Signal::Snapshot(vec!["public.orders".into()]);
        assert_eq!(s.kind(), "execute-snapshot");
        let data: serde_json::Value = serde_json::from_str(&s.data().unwrap()).unwrap();
        assert_eq!(data["data-collections"][0], "public.orders");
        assert_eq!(data["type"], "incremental");
        assert_eq!(Signal::Pause.kind(), "pause-snapshot");
        assert_eq!(Signal::Stop.data(), None);
    }
}
