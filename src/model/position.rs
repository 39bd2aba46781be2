//! Where a record stands in a connector's output, totally ordered.

use std::fmt;

use super::lsn::Lsn;

/// A record's place in the total order of a connector's output: the commit LSN of its
/// transaction and its index inside it. An LSN alone is not enough: one WAL record can
/// hold many rows, and a transaction many records.
///
/// The index is 64 bits wide: every initial-snapshot row shares one LSN, so a snapshot
/// of more than 2^32 rows would wrap a 32-bit index, and the exactly-once check would
/// then skip every later row as already sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub commit_lsn: Lsn,
    pub index: u64,
}

/// No index is left for another record of a transaction (or snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the record index of position {commit_lsn}# overflowed after {} records; this is a bug in walcast, please report it (nothing past the checkpoint is confirmed)", u64::MAX)]
pub struct PositionOverflow {
    pub commit_lsn: Lsn,
}

/// The position of the next record of the transaction committing at `commit_lsn`,
/// `index` being how many of its records came before; counts it. Fails instead of
/// wrapping, which would hand out a position that sorts before records already sent.
pub fn next_position(commit_lsn: Lsn, index: &mut u64) -> Result<Position, PositionOverflow> {
    let position = Position {
        commit_lsn,
        index: *index,
    };
    *index = index
        .checked_add(1)
        .ok_or(PositionOverflow { commit_lsn })?;
    Ok(position)
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.commit_lsn, self.index)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (lsn, index) = s
            .split_once('#')
            .ok_or_else(|| format!("`{s}` is not a position such as 16/B374D848#3"))?;
        Ok(Self {
            commit_lsn: lsn.parse()?,
            index: index
                .parse()
                .map_err(|_| format!("`{s}` has a bad index"))?,
        })
    }
}
