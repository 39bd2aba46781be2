//! Bytes → [`Message`]: a bounds-checked reader over one pgoutput message.

use bytes::Bytes;

use super::*;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message is empty")]
    Empty,
    #[error("unknown pgoutput message type {0:#04x}")]
    UnknownType(u8),
    #[error(
        "pgoutput {message} message ended early: needed {needed} more byte(s) at offset {offset}"
    )]
    Truncated {
        message: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("pgoutput {message} message has {extra} unexpected trailing byte(s)")]
    TrailingBytes { message: &'static str, extra: usize },
    #[error("pgoutput {message} message has an unterminated string at offset {offset}")]
    UnterminatedString {
        message: &'static str,
        offset: usize,
    },
    #[error("pgoutput {message} message has a string that is not UTF-8 at offset {offset}")]
    InvalidUtf8 {
        message: &'static str,
        offset: usize,
    },
    #[error("pgoutput {message} message: {detail}")]
    Invalid {
        message: &'static str,
        detail: String,
    },
}

/// Decodes one pgoutput message (the payload of an XLogData).
pub fn decode(data: &Bytes, ctx: DecodeContext) -> Result<Message, DecodeError> {
    let tag = *data.first().ok_or(DecodeError::Empty)?;
    let mut r = Reader {
        data,
        pos: 1,
        message: name_of(tag),
    };
    let xid = |r: &mut Reader<'_>| -> Result<Option<u32>, DecodeError> {
        if ctx.in_stream {
            r.u32().map(Some)
        } else {
            Ok(None)
        }
    };
    let message = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: r.lsn()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8()?,
            commit_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            commit_time: r.i64()?,
        }),
        b'O' => Message::Origin(Origin {
            commit_lsn: r.lsn()?,
            name: r.string()?,
        }),
        b'R' => {
            let xid = xid(&mut r)?;
            let oid = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let count = r.count16()?;
            let mut columns = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                columns.push(RelationColumn {
                    flags: r.u8()?,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation(Relation {
                xid,
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type(TypeMessage {
            xid: xid(&mut r)?,
            oid: r.u32()?,
            namespace: r.string()?,
            name: r.string()?,
        }),
        b'I' => {
            let xid = xid(&mut r)?;
            let relation = r.u32()?;
            r.expect_tag(b'N', "N (new tuple)")?;
            Message::Insert(Insert {
                xid,
                relation,
                new: r.tuple()?,
            })
        }
        b'U' => {
            let xid = xid(&mut r)?;
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'K' => {
                    let t = r.tuple()?;
                    r.expect_tag(b'N', "N (new tuple)")?;
                    Some(OldTuple::Key(t))
                }
                b'O' => {
                    let t = r.tuple()?;
                    r.expect_tag(b'N', "N (new tuple)")?;
                    Some(OldTuple::Full(t))
                }
                b'N' => None,
                other => {
                    return Err(r.invalid(format!("tuple kind {other:#04x}, expected K, O or N")))
                }
            };
            Message::Update(Update {
                xid,
                relation,
                old,
                new: r.tuple()?,
            })
        }
        b'D' => {
            let xid = xid(&mut r)?;
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                other => return Err(r.invalid(format!("tuple kind {other:#04x}, expected K or O"))),
            };
            Message::Delete(Delete { xid, relation, old })
        }
        b'T' => {
            let xid = xid(&mut r)?;
            let count = r.u32()? as usize;
            let options = r.u8()?;
            let mut relations = Vec::with_capacity(count.min(r.remaining() / 4));
            for _ in 0..count {
                relations.push(r.u32()?);
            }
            Message::Truncate(Truncate {
                xid,
                options,
                relations,
            })
        }
        b'M' => {
            let xid = xid(&mut r)?;
            let transactional = r.u8()? & 1 == 1;
            let lsn = r.lsn()?;
            let prefix = r.string()?;
            let len = r.u32()? as usize;
            Message::Message(LogicalMessage {
                xid,
                transactional,
                lsn,
                prefix,
                content: r.bytes(len)?,
            })
        }
        b'S' => Message::StreamStart(StreamStart {
            xid: r.u32()?,
            first_segment: r.u8()? == 1,
        }),
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit(StreamCommit {
            xid: r.u32()?,
            flags: r.u8()?,
            commit_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            commit_time: r.i64()?,
        }),
        b'A' => {
            let xid = r.u32()?;
            let subxid = r.u32()?;
            // Parallel streaming adds the abort LSN and time; their presence is only
            // knowable from the length.
            let (abort_lsn, abort_time) = if r.remaining() >= 16 {
                (Some(r.lsn()?), Some(r.i64()?))
            } else {
                (None, None)
            };
            Message::StreamAbort(StreamAbort {
                xid,
                subxid,
                abort_lsn,
                abort_time,
            })
        }
        b'b' => Message::BeginPrepare(PrepareInfo {
            flags: 0,
            prepare_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            prepare_time: r.i64()?,
            xid: r.u32()?,
            gid: r.string()?,
        }),
        b'P' | b'p' => {
            let info = PrepareInfo {
                flags: r.u8()?,
                prepare_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                prepare_time: r.i64()?,
                xid: r.u32()?,
                gid: r.string()?,
            };
            if tag == b'P' {
                Message::Prepare(info)
            } else {
                Message::StreamPrepare(info)
            }
        }
        b'K' => Message::CommitPrepared(CommitPrepared {
            flags: r.u8()?,
            commit_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
            gid: r.string()?,
        }),
        b'r' => Message::RollbackPrepared(RollbackPrepared {
            flags: r.u8()?,
            prepare_end_lsn: r.lsn()?,
            rollback_end_lsn: r.lsn()?,
            prepare_time: r.i64()?,
            rollback_time: r.i64()?,
            xid: r.u32()?,
            gid: r.string()?,
        }),
        other => return Err(DecodeError::UnknownType(other)),
    };
    if r.remaining() > 0 {
        return Err(DecodeError::TrailingBytes {
            message: r.message,
            extra: r.remaining(),
        });
    }
    Ok(message)
}

fn name_of(tag: u8) -> &'static str {
    match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        b'S' => "Stream Start",
        b'E' => "Stream Stop",
        b'c' => "Stream Commit",
        b'A' => "Stream Abort",
        b'b' => "Begin Prepare",
        b'P' => "Prepare",
        b'K' => "Commit Prepared",
        b'r' => "Rollback Prepared",
        b'p' => "Stream Prepare",
        _ => "unknown",
    }
}

/// A cursor that never reads past the end.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    message: &'static str,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                message: self.message,
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        self.array().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_be_bytes)
    }

    fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        self.array().map(u64::from_be_bytes).map(Lsn)
    }

    fn count16(&mut self) -> Result<usize, DecodeError> {
        let n = self.array().map(i16::from_be_bytes)?;
        usize::try_from(n).map_err(|_| self.invalid(format!("negative count {n}")))
    }

    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.data.slice(start..start + n))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = &self.data[start..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString {
                message: self.message,
                offset: start,
            })?;
        let text = std::str::from_utf8(&rest[..len]).map_err(|_| DecodeError::InvalidUtf8 {
            message: self.message,
            offset: start,
        })?;
        self.pos += len + 1;
        Ok(text.to_owned())
    }

    fn expect_tag(&mut self, tag: u8, what: &str) -> Result<(), DecodeError> {
        let got = self.u8()?;
        if got == tag {
            Ok(())
        } else {
            Err(self.invalid(format!("expected {what}, found {got:#04x}")))
        }
    }

    fn tuple(&mut self) -> Result<TupleData, DecodeError> {
        let count = self.count16()?;
        let mut columns = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            columns.push(match self.u8()? {
                b'n' => Column::Null,
                b'u' => Column::UnchangedToast,
                b't' => {
                    let len = self.u32()? as usize;
                    Column::Text(self.bytes(len)?)
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    Column::Binary(self.bytes(len)?)
                }
                other => {
                    return Err(
                        self.invalid(format!("column kind {other:#04x}, expected n, u, t or b"))
                    )
                }
            });
        }
        Ok(TupleData { columns })
    }

    fn invalid(&self, detail: String) -> DecodeError {
        DecodeError::Invalid {
            message: self.message,
            detail,
        }
    }
}
