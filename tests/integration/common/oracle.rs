//! The oracle the tests compare walcast's topics with: a `test_decoding` slot created
//! before the workload, read back as (op, id, status) of each change of public.orders.

use std::time::Duration;

use super::TestDb;

/// (op, id, status) of each change of public.orders, per the oracle slot.
pub(crate) fn oracle(db: &TestDb, slot: &str) -> Vec<(String, i64, Option<String>)> {
    // The test cluster runs with synchronous_commit = off: a synchronous commit flushes
    // the WAL of every earlier one, so decoding (which stops at the flush point) sees all.
    db.psql("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT");
    let out = db.psql(&format!("SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL) WHERE data LIKE 'table public.orders:%'"));
    out.lines()
        .map(|line| {
            let op = if line.contains(": INSERT:") {
                "c"
            } else if line.contains(": UPDATE:") {
                "u"
            } else {
                "d"
            };
            let id = line
                .split("id[integer]:")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            // A delete's old row holds only the key (REPLICA IDENTITY DEFAULT).
            let status = if op == "d" {
                None
            } else {
                line.split("status[text]:'")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .map(str::to_owned)
            };
            (op.to_owned(), id, status)
        })
        .collect()
}

/// The oracle, read until it stops growing (decoding trails the commits a little).
pub(crate) fn settled_oracle(db: &TestDb, slot: &str) -> Vec<(String, i64, Option<String>)> {
    let mut expected = oracle(db, slot);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        let again = oracle(db, slot);
        // Stable and not empty: decoding can trail the commits on a busy machine.
        if again.len() == expected.len() && !again.is_empty() {
            break;
        }
        expected = again;
    }
    expected
}
