//! The replication connection and the streaming-replication sub-protocol.

mod connection;
mod login;
pub mod protocol;

pub use connection::{
    CreatedSlot, QueryResult, ReplicationConnection, ReplicationError, SystemIdentity,
};
pub use protocol::WalMessage;
