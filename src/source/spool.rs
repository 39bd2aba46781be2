//! Holds the changes of large in-progress transactions that PostgreSQL streams
//! (protocol 2+) until their Stream Commit, in memory up to a limit and in a
//! temporary file beyond it, so memory stays flat however big a transaction is; and
//! never more than a total budget, so a runaway transaction stops the connector with a
//! clear error instead of filling the disk.
//!
//! Records are the raw pgoutput messages (still carrying their subtransaction xid);
//! replay decodes them again in order. A Stream Abort of a subtransaction marks its
//! xid so replay skips its records; an abort of the whole transaction drops it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;

/// Where and how much to keep.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Bytes of records kept in memory per transaction before it spills to a file.
    pub memory_limit: usize,
    /// Folder for spill files (deleted when the transaction ends or walcast exits).
    pub dir: PathBuf,
    /// The most all transactions in progress may hold, memory and files together.
    pub max_bytes: u64,
    /// Where the spool reports what it holds and what it spilled.
    pub metrics: Option<SpoolMetrics>,
}

/// The spool's gauges: bytes held (memory and files) and bytes written to spill files.
#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    pub held: prometheus::IntGauge,
    pub spilled: prometheus::IntCounter,
}

impl SpoolConfig {
    /// Spill files in `dir`, at most `max_bytes` in all; 8 MiB per transaction in memory.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            memory_limit: 8 * 1024 * 1024,
            dir,
            max_bytes,
            metrics: None,
        }
    }
}

/// The spool's budget would be exceeded.
#[derive(Debug, thiserror::Error)]
#[error("the large streamed transactions in progress hold {held} bytes and the next change of transaction {xid} would pass [source] spool_max_bytes = {max}; raise it, or point [source] spool_dir at a larger disk (nothing of the transaction was confirmed: it is decoded again after a restart)")]
pub struct SpoolFull {
    pub held: u64,
    pub max: u64,
    pub xid: u32,
}

/// Why a record could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(transparent)]
    Full(#[from] SpoolFull),
    #[error(
        "cannot spool a large streamed transaction in {dir}: {source}; check [source] spool_dir"
    )]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One streamed transaction's records.
#[derive(Debug)]
struct TxSpool {
    memory: Vec<u8>,
    file: Option<BufWriter<File>>,
    aborted_subxacts: HashSet<u32>,
    records: u64,
    /// Bytes appended (memory and file).
    bytes: u64,
}

/// All streamed transactions in progress, by top-level xid.
#[derive(Debug)]
pub struct Spool {
    config: SpoolConfig,
    open: HashMap<u32, TxSpool>,
    /// Bytes held across `open`.
    held: u64,
    /// Bytes written to spill files since the spool was made.
    spilled: u64,
}

/// Reads one transaction's records back, in order, skipping aborted subtransactions.
pub struct Replay {
    memory: Vec<u8>,
    memory_pos: usize,
    file: Option<BufReader<File>>,
    aborted: HashSet<u32>,
}

impl Spool {
    pub fn new(config: SpoolConfig) -> Self {
        Self {
            config,
            open: HashMap::new(),
            held: 0,
            spilled: 0,
        }
    }

    /// Bytes currently held in memory across all transactions.
    pub fn memory_bytes(&self) -> usize {
        self.open.values().map(|t| t.memory.len()).sum()
    }

    /// Whether a streamed transaction is open (begun, neither committed nor aborted).
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Bytes currently held, memory and files, across all transactions.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Bytes written to spill files so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled
    }

    /// Appends a record of transaction `xid`, made by (sub)transaction `subxid`.
    pub fn append(&mut self, xid: u32, subxid: u32, message: &[u8]) -> Result<(), SpoolError> {
        let size = message.len() as u64 + 8;
        if self.held + size > self.config.max_bytes {
            return Err(SpoolFull {
                held: self.held,
                max: self.config.max_bytes,
                xid,
            }
            .into());
        }
        let io_err = |source| SpoolError::Io {
            dir: self.config.dir.clone(),
            source,
        };
        let limit = self.config.memory_limit;
        let tx = self.open.entry(xid).or_insert_with(|| TxSpool {
            memory: Vec::new(),
            file: None,
            aborted_subxacts: HashSet::new(),
            records: 0,
            bytes: 0,
        });
        tx.records += 1;
        let len = u32::try_from(message.len())
            .map_err(|_| io_err(io::Error::other("a single change over 4 GiB")))?;
        if tx.file.is_none() && tx.memory.len() + message.len() + 8 > limit {
            // tempfile() unlinks at once: nothing is left behind even after kill -9.
            let file = tempfile::tempfile_in(&self.config.dir).map_err(io_err)?;
            let mut file = BufWriter::with_capacity(256 * 1024, file);
            file.write_all(&tx.memory).map_err(io_err)?;
            self.spilled += tx.memory.len() as u64;
            if let Some(m) = &self.config.metrics {
                m.spilled.inc_by(tx.memory.len() as u64);
            }
            tx.memory = Vec::new();
            tx.file = Some(file);
        }
        tx.bytes += size;
        self.held += size;
        if let Some(m) = &self.config.metrics {
            m.held.set(self.held as i64);
        }
        match &mut tx.file {
            Some(file) => {
                let mut write = || -> io::Result<()> {
                    file.write_all(&subxid.to_be_bytes())?;
                    file.write_all(&len.to_be_bytes())?;
                    file.write_all(message)
                };
                write().map_err(io_err)?;
                self.spilled += size;
                if let Some(m) = &self.config.metrics {
                    m.spilled.inc_by(size);
                }
            }
            None => {
                tx.memory.extend_from_slice(&subxid.to_be_bytes());
                tx.memory.extend_from_slice(&len.to_be_bytes());
                tx.memory.extend_from_slice(message);
            }
        }
        Ok(())
    }

    /// A Stream Abort: the whole transaction (`subxid == xid`) or one subtransaction.
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if xid == subxid {
            if let Some(tx) = self.open.remove(&xid) {
                self.held -= tx.bytes;
                if let Some(m) = &self.config.metrics {
                    m.held.set(self.held as i64);
                }
            }
        } else if let Some(tx) = self.open.get_mut(&xid) {
            tx.aborted_subxacts.insert(subxid);
        }
    }

    /// Stream Commit: hands over the transaction's records for replay.
    pub fn commit(&mut self, xid: u32) -> io::Result<Replay> {
        let Some(tx) = self.open.remove(&xid) else {
            return Ok(Replay {
                memory: Vec::new(),
                memory_pos: 0,
                file: None,
                aborted: HashSet::new(),
            });
        };
        self.held -= tx.bytes;
        if let Some(m) = &self.config.metrics {
            m.held.set(self.held as i64);
        }
        let file = match tx.file {
            Some(writer) => {
                let mut file = writer.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                Some(BufReader::with_capacity(256 * 1024, file))
            }
            None => None,
        };
        Ok(Replay {
            memory: tx.memory,
            memory_pos: 0,
            file,
            aborted: tx.aborted_subxacts,
        })
    }

    /// Forgets everything (the connection was lost; the server resends from the slot).
    pub fn clear(&mut self) {
        self.open.clear();
        self.held = 0;
        if let Some(m) = &self.config.metrics {
            m.held.set(0);
        }
    }
}

impl Replay {
    /// The next record that is not of an aborted subtransaction.
    pub fn next_record(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let (subxid, data) = match &mut self.file {
                Some(file) => {
                    let mut header = [0u8; 8];
                    match file.read_exact(&mut header) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                        Err(e) => return Err(e),
                    }
                    let subxid = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                    let len =
                        u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                    let mut data = vec![0u8; len];
                    file.read_exact(&mut data)?;
                    (subxid, Bytes::from(data))
                }
                None => {
                    let rest = &self.memory[self.memory_pos..];
                    if rest.len() < 8 {
                        return Ok(None);
                    }
                    let subxid = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
                    let data = rest
                        .get(8..8 + len)
                        .ok_or_else(|| io::Error::other("spool record cut short"))?;
                    let data = Bytes::copy_from_slice(data);
                    self.memory_pos += 8 + len;
                    (subxid, data)
                }
            };
            if !self.aborted.contains(&subxid) {
                return Ok(Some(data));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut r: Replay) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = r.next_record().unwrap() {
            out.push(b.to_vec());
        }
        out
    }

    #[test]
    fn small_transactions_stay_in_memory_and_replay_in_order() {
        let mut spool = Spool::new(SpoolConfig::new(std::env::temp_dir(), u64::MAX));
        spool.append(7, 7, b"a").unwrap();
        spool.append(8, 8, b"x").unwrap();
        spool.append(7, 7, b"b").unwrap();
        assert!(spool.memory_bytes() > 0);
        assert_eq!(
            drain(spool.commit(7).unwrap()),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(drain(spool.commit(8).unwrap()), vec![b"x".to_vec()]);
        assert_eq!(spool.memory_bytes(), 0);
    }

    #[test]
    fn large_transactions_spill_to_disk_with_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(SpoolConfig {
            memory_limit: 1024,
            dir: dir.path().to_owned(),
            max_bytes: u64::MAX,
            metrics: None,
        });
        for i in 0..10_000u32 {
            spool.append(1, 1, &i.to_be_bytes()).unwrap();
            assert!(spool.memory_bytes() <= 1024);
        }
        let records = drain(spool.commit(1).unwrap());
        assert_eq!(records.len(), 10_000);
        assert_eq!(records[9_999], 9_999u32.to_be_bytes().to_vec());
        assert!(spool.spilled_bytes() >= 10_000 * 12 - 1024);
        assert_eq!(spool.held_bytes(), 0, "released at commit");
        // The spill file is unlinked: the folder stays empty.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn aborted_subtransactions_and_transactions_are_dropped() {
        let mut spool = Spool::new(SpoolConfig {
            memory_limit: 16,
            dir: std::env::temp_dir(),
            max_bytes: u64::MAX,
            metrics: None,
        });
        spool.append(1, 1, b"keep1").unwrap();
        spool.append(1, 2, b"drop").unwrap();
        spool.append(1, 3, b"keep2").unwrap();
        spool.abort(1, 2);
        assert_eq!(
            drain(spool.commit(1).unwrap()),
            vec![b"keep1".to_vec(), b"keep2".to_vec()]
        );

        spool.append(5, 5, b"gone").unwrap();
        spool.abort(5, 5);
        assert!(drain(spool.commit(5).unwrap()).is_empty());
    }

    #[test]
    fn a_transaction_is_open_from_its_first_record_until_committed_or_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(SpoolConfig::new(dir.path().to_owned(), 1 << 20));
        assert!(!spool.has_open());
        spool.append(7, 7, b"a").unwrap();
        assert!(spool.has_open(), "begun");
        drain(spool.commit(7).unwrap());
        assert!(!spool.has_open(), "committed");
        spool.append(8, 8, b"b").unwrap();
        spool.abort(8, 8);
        assert!(!spool.has_open(), "aborted");
    }

    #[test]
    fn the_budget_stops_a_transaction_before_it_passes_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(SpoolConfig {
            memory_limit: 64,
            dir: dir.path().to_owned(),
            max_bytes: 100,
            metrics: None,
        });
        // Each record takes its length plus 8 bytes of header.
        for _ in 0..5 {
            spool.append(1, 1, &[0u8; 12]).unwrap();
        }
        assert_eq!(spool.held_bytes(), 100);
        let err = spool.append(2, 2, b"x").unwrap_err();
        assert!(matches!(
            err,
            SpoolError::Full(SpoolFull {
                held: 100,
                max: 100,
                xid: 2
            })
        ));
        assert!(err.to_string().contains("spool_max_bytes = 100"), "{err}");
        // An aborted transaction gives its room back.
        spool.abort(1, 1);
        assert_eq!(spool.held_bytes(), 0);
        spool.append(2, 2, b"x").unwrap();
        spool.clear();
        assert_eq!(spool.held_bytes(), 0);
    }
}
