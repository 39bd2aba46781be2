//! The one place that says which PostgreSQL failures a later reconnect may cure. Codes
//! are tokio-postgres's named [`SqlState`] constants, never literals.

use tokio_postgres::error::SqlState;

/// Whether a failure with SQLSTATE `code` may pass if walcast connects again later:
/// the connection broke (class 08), the server is shutting down, restarting or
/// starting up (class 57P: admin or crash shutdown, cannot connect now), no connection
/// is free (53300), or the slot is still held by a session that is going away (55006).
/// Anything else (a missing slot, a refused password, an invalidated slot) needs a
/// person.
pub fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P")
        || code == SqlState::TOO_MANY_CONNECTIONS.code()
        || code == SqlState::OBJECT_IN_USE.code()
}

/// The slot or publication named in a command does not exist.
pub fn is_missing_object(code: &str) -> bool {
    code == SqlState::UNDEFINED_OBJECT.code()
}

/// An object is in the wrong state for the command: for `START_REPLICATION`, an
/// invalidated slot (told apart by the server's message).
pub fn is_wrong_state(code: &str) -> bool {
    code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_and_availability_failures_are_transient() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "55006",
        ] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["42704", "55000", "28P01", "42501", "3D000", "XX000"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn named_codes_match_their_sqlstate() {
        assert!(is_missing_object("42704"));
        assert!(is_wrong_state("55000"));
        assert!(!is_missing_object("55000"));
    }
}
