//! The acknowledgement tracker: the checkpoint is the end of the last
//! transaction all of whose records Kafka acknowledged, and every transaction before it
//! too. It (and only it) may be confirmed to PostgreSQL as the flush LSN. Pure.

use std::collections::VecDeque;

use crate::model::lsn::Lsn;
pub use crate::model::position::{next_position, Position, PositionOverflow};

/// The tracker entry a record's acknowledgement is credited to: each send carries the
/// ticket of the transaction entry it was counted in, so a transaction PostgreSQL sends
/// again after a reconnect (a second entry with the same commit LSN, while records of
/// the first are still in flight) has each of its acknowledgements credited to the copy
/// that was sent, never to the other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

impl Ticket {
    /// Carried by records that are no part of the guarantee (the checkpoint record):
    /// their acknowledgement credits nothing.
    pub const NONE: Ticket = Ticket(0);
}

/// What may be confirmed: everything up to and including `position` is in Kafka, and
/// PostgreSQL may release WAL up to `flush_lsn`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub flush_lsn: Lsn,
}

#[derive(Debug)]
struct Pending {
    /// Increases with every entry, so the queue is sorted by it.
    ticket: Ticket,
    commit_lsn: Lsn,
    end_lsn: Lsn,
    last_index: u64,
    outstanding: u64,
    committed: bool,
}

/// Tracks transactions from their first record to the acknowledgement of their last.
#[derive(Debug, Default)]
pub struct AckTracker {
    pending: VecDeque<Pending>,
    checkpoint: Option<Checkpoint>,
    /// The ticket of the last entry begun (0 before the first: [`Ticket::NONE`]).
    last_ticket: u64,
}

impl AckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transaction (or a non-transactional message, as a transaction of its own) starts.
    /// After a reconnect the server sends the interrupted transaction again: it continues
    /// the entry whose records are still in flight instead of starting a second one.
    pub fn begin(&mut self, commit_lsn: Lsn) {
        if let Some(back) = self.pending.back_mut() {
            if !back.committed {
                if back.commit_lsn == commit_lsn {
                    return;
                }
                // Interrupted and never resent (cannot happen with a well-behaved
                // server): close it at its start so the checkpoint stays before it.
                back.committed = true;
            }
        }
        self.last_ticket += 1;
        self.pending.push_back(Pending {
            ticket: Ticket(self.last_ticket),
            commit_lsn,
            end_lsn: commit_lsn,
            last_index: 0,
            outstanding: 0,
            committed: false,
        });
    }

    /// A record of the current (last begun) transaction is handed to the producer; its
    /// delivery report must carry the returned ticket.
    pub fn sent(&mut self, index: u64) -> Ticket {
        match self.pending.back_mut() {
            Some(tx) => {
                tx.outstanding += 1;
                tx.last_index = tx.last_index.max(index);
                tx.ticket
            }
            None => Ticket::NONE,
        }
    }

    /// The current transaction has no more records; its WAL ends at `end_lsn`.
    pub fn commit(&mut self, end_lsn: Lsn) {
        if let Some(tx) = self.pending.back_mut() {
            tx.end_lsn = end_lsn;
            tx.committed = true;
        }
    }

    /// The connection restarted: a transaction begun and not committed comes again whole.
    /// Its entry is dropped unless records of it are still in flight (then [`begin`]
    /// continues it, so their acknowledgements are counted where they were sent).
    ///
    /// [`begin`]: Self::begin
    pub fn drop_uncommitted(&mut self) {
        if self
            .pending
            .back()
            .is_some_and(|tx| !tx.committed && tx.outstanding == 0)
        {
            self.pending.pop_back();
        }
    }

    /// Transactional delivery: a Kafka transaction holding every record sent so far
    /// committed, so all of them are acknowledged at once.
    pub fn acked_all_sent(&mut self) {
        for tx in &mut self.pending {
            tx.outstanding = 0;
        }
    }

    /// Kafka acknowledged a record sent with `ticket`. An entry leaves the queue only
    /// once nothing of it is outstanding, so the ticket of a record in flight is always
    /// found.
    pub fn acked(&mut self, ticket: Ticket) {
        let at = self.pending.partition_point(|t| t.ticket < ticket);
        if let Some(tx) = self.pending.get_mut(at).filter(|t| t.ticket == ticket) {
            debug_assert!(tx.outstanding > 0, "more acknowledgements than sends");
            tx.outstanding = tx.outstanding.saturating_sub(1);
        }
    }

    /// The commit LSN of the transaction a ticket belongs to, while it is pending (to
    /// name it in an error).
    pub fn commit_lsn_of(&self, ticket: Ticket) -> Option<Lsn> {
        let at = self.pending.partition_point(|t| t.ticket < ticket);
        self.pending
            .get(at)
            .filter(|t| t.ticket == ticket)
            .map(|t| t.commit_lsn)
    }

    /// Nothing is in flight and the server's WAL is at `wal_end`: the idle database's
    /// slot may advance there (nothing before it is left to send).
    /// Returns the checkpoint when it moved.
    pub fn idle(&mut self, wal_end: Lsn) -> Option<Checkpoint> {
        if !self.pending.is_empty() || self.checkpoint.is_some_and(|c| c.flush_lsn >= wal_end) {
            return None;
        }
        let position = self
            .checkpoint
            .map_or_else(Position::default, |c| c.position);
        self.checkpoint = Some(Checkpoint {
            position,
            flush_lsn: wal_end,
        });
        self.checkpoint
    }

    /// Moves past every leading transaction that is committed and fully acknowledged;
    /// returns the new checkpoint when it moved.
    pub fn advance(&mut self) -> Option<Checkpoint> {
        let mut moved = false;
        while let Some(front) = self.pending.front() {
            if !(front.committed && front.outstanding == 0) {
                break;
            }
            let done = self.pending.pop_front()?;
            let flush_lsn = self
                .checkpoint
                .map_or(done.end_lsn, |c| c.flush_lsn.max(done.end_lsn));
            self.checkpoint = Some(Checkpoint {
                position: Position {
                    commit_lsn: done.commit_lsn,
                    index: done.last_index,
                },
                flush_lsn,
            });
            moved = true;
        }
        if moved {
            self.checkpoint
        } else {
            None
        }
    }

    /// Whether a source transaction has begun and not yet committed (some of its
    /// records may be sent, not all).
    pub fn mid_transaction(&self) -> bool {
        self.pending.back().is_some_and(|tx| !tx.committed)
    }

    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    /// Records handed to the producer and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.pending.iter().map(|t| t.outstanding).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_lsn_then_index_and_round_trip() {
        let a = Position {
            commit_lsn: Lsn(10),
            index: 5,
        };
        let b = Position {
            commit_lsn: Lsn(11),
            index: 0,
        };
        assert!(a < b);
        assert!(
            Position {
                commit_lsn: Lsn(10),
                index: 6
            } > a
        );
        assert_eq!("0/A#5".parse::<Position>().unwrap(), a);
        assert_eq!(a.to_string(), "0/A#5");
        assert!("0/A".parse::<Position>().is_err());
    }

    #[test]
    fn the_position_index_fails_loudly_instead_of_wrapping() {
        // Past 2^32 records (a large snapshot) the index keeps growing.
        let mut index = u64::from(u32::MAX);
        let p = next_position(Lsn(7), &mut index).unwrap();
        assert_eq!(p.index, u64::from(u32::MAX));
        let q = next_position(Lsn(7), &mut index).unwrap();
        assert!(q > p, "{q} sorts after {p}");
        assert_eq!(q.to_string().parse::<Position>().unwrap(), q);
        // At the very end it refuses rather than going back to 0.
        let mut index = u64::MAX - 1;
        assert_eq!(
            next_position(Lsn(7), &mut index).unwrap().index,
            u64::MAX - 1
        );
        assert_eq!(
            next_position(Lsn(7), &mut index),
            Err(PositionOverflow { commit_lsn: Lsn(7) })
        );
    }

    #[test]
    fn the_checkpoint_waits_for_every_earlier_ack() {
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        let first = t.sent(0);
        t.sent(1);
        t.commit(Lsn(110));
        t.begin(Lsn(200));
        let second = t.sent(0);
        t.commit(Lsn(210));
        // The second transaction is acked first: nothing moves.
        t.acked(second);
        assert_eq!(t.advance(), None);
        t.acked(first);
        assert_eq!(
            t.advance(),
            None,
            "one record of the first is still in flight"
        );
        t.acked(first);
        let c = t.advance().unwrap();
        assert_eq!(c.flush_lsn, Lsn(210));
        assert_eq!(
            c.position,
            Position {
                commit_lsn: Lsn(200),
                index: 0
            }
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn an_uncommitted_transaction_holds_the_checkpoint() {
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        let ticket = t.sent(0);
        t.acked(ticket);
        assert_eq!(t.advance(), None);
        t.drop_uncommitted();
        assert!(t.idle(Lsn(500)).is_some());
        assert_eq!(t.checkpoint().unwrap().flush_lsn, Lsn(500));
    }

    #[test]
    fn idle_advances_only_when_nothing_is_pending() {
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        let ticket = t.sent(0);
        t.commit(Lsn(120));
        assert_eq!(t.idle(Lsn(900)), None);
        assert_eq!(t.checkpoint(), None);
        t.acked(ticket);
        t.advance();
        t.idle(Lsn(900));
        assert_eq!(t.checkpoint().unwrap().flush_lsn, Lsn(900));
        assert_eq!(t.idle(Lsn(800)), None);
        assert_eq!(
            t.checkpoint().unwrap().flush_lsn,
            Lsn(900),
            "never moves back"
        );
    }

    #[test]
    fn a_transaction_resent_after_a_reconnect_continues_its_entry() {
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        let before = t.sent(0);
        t.sent(1);
        // The connection drops mid-transaction with two records in flight.
        t.drop_uncommitted();
        t.begin(Lsn(100));
        // Records 0 and 1 are skipped as already sent; 2 is new.
        let after = t.sent(2);
        assert_eq!(before, after, "the same entry continues");
        t.commit(Lsn(120));
        t.acked(before);
        t.acked(before);
        assert_eq!(t.advance(), None, "record 2 is still in flight");
        t.acked(after);
        let c = t.advance().unwrap();
        assert_eq!(c.position.index, 2);
        assert_eq!(c.flush_lsn, Lsn(120));
    }

    #[test]
    fn a_kafka_transaction_commit_acknowledges_everything_sent() {
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        t.sent(0);
        t.commit(Lsn(110));
        t.begin(Lsn(200));
        t.sent(0);
        t.sent(1);
        t.acked_all_sent();
        let c = t.advance().unwrap();
        assert_eq!(
            c.flush_lsn,
            Lsn(110),
            "the open source transaction holds the rest"
        );
        t.commit(Lsn(220));
        assert_eq!(t.advance().unwrap().flush_lsn, Lsn(220));
    }

    #[test]
    fn empty_transactions_pass_through() {
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        t.commit(Lsn(130));
        assert_eq!(t.advance().unwrap().flush_lsn, Lsn(130));
    }

    #[test]
    fn a_committed_transaction_resent_while_in_flight_is_credited_per_send() {
        // at_least_once: the connection drops after transaction 100 committed with two
        // records in flight; the server sends it again and both copies are produced.
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        let first = t.sent(0);
        t.sent(1);
        t.commit(Lsn(110));
        t.drop_uncommitted();
        t.begin(Lsn(100));
        let again = t.sent(0);
        t.sent(1);
        t.commit(Lsn(110));
        assert_ne!(first, again);
        // Both copies of record 0 are acknowledged; record 1 of the first send is not.
        t.acked(first);
        t.acked(again);
        assert_eq!(
            t.advance(),
            None,
            "record 1 of the first send is still in flight"
        );
        // The resent copy's record 1, then the first's: the checkpoint moves past both.
        t.acked(again);
        assert_eq!(t.advance(), None, "the first send still holds it");
        t.acked(first);
        assert_eq!(t.advance().unwrap().flush_lsn, Lsn(110));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn acknowledgements_arriving_together_never_stall_the_checkpoint() {
        // Both copies' acknowledgements in one batch: none is swallowed.
        let mut t = AckTracker::new();
        t.begin(Lsn(100));
        let first = [t.sent(0), t.sent(1)];
        t.commit(Lsn(110));
        t.drop_uncommitted();
        t.begin(Lsn(100));
        let again = [t.sent(0), t.sent(1)];
        t.commit(Lsn(110));
        for ticket in first.iter().chain(&again) {
            t.acked(*ticket);
        }
        assert_eq!(t.advance().unwrap().flush_lsn, Lsn(110));
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.commit_lsn_of(first[0]), None, "gone once confirmed");
    }
}
