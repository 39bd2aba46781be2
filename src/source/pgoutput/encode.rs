//! [`Message`] → bytes, the exact inverse of [`super::decode`]: used by property tests,
//! benchmarks and test fixtures that play the server's part.

use bytes::{BufMut, BytesMut};

use super::*;

/// Encodes `message` as PostgreSQL would send it in the given context.
pub fn encode(message: &Message, ctx: DecodeContext, out: &mut BytesMut) {
    let xid = |out: &mut BytesMut, xid: Option<u32>| {
        if ctx.in_stream {
            out.put_u32(xid.unwrap_or(0));
        }
    };
    match message {
        Message::Begin(b) => {
            out.put_u8(b'B');
            out.put_u64(b.final_lsn.0);
            out.put_i64(b.commit_time);
            out.put_u32(b.xid);
        }
        Message::Commit(c) => {
            out.put_u8(b'C');
            out.put_u8(c.flags);
            out.put_u64(c.commit_lsn.0);
            out.put_u64(c.end_lsn.0);
            out.put_i64(c.commit_time);
        }
        Message::Origin(o) => {
            out.put_u8(b'O');
            out.put_u64(o.commit_lsn.0);
            string(out, &o.name);
        }
        Message::Relation(r) => {
            out.put_u8(b'R');
            xid(out, r.xid);
            out.put_u32(r.oid);
            string(out, &r.namespace);
            string(out, &r.name);
            out.put_u8(r.replica_identity);
            out.put_i16(r.columns.len() as i16);
            for c in &r.columns {
                out.put_u8(c.flags);
                string(out, &c.name);
                out.put_u32(c.type_oid);
                out.put_i32(c.type_modifier);
            }
        }
        Message::Type(t) => {
            out.put_u8(b'Y');
            xid(out, t.xid);
            out.put_u32(t.oid);
            string(out, &t.namespace);
            string(out, &t.name);
        }
        Message::Insert(i) => {
            out.put_u8(b'I');
            xid(out, i.xid);
            out.put_u32(i.relation);
            out.put_u8(b'N');
            tuple(out, &i.new);
        }
        Message::Update(u) => {
            out.put_u8(b'U');
            xid(out, u.xid);
            out.put_u32(u.relation);
            match &u.old {
                Some(OldTuple::Key(t)) => {
                    out.put_u8(b'K');
                    tuple(out, t);
                }
                Some(OldTuple::Full(t)) => {
                    out.put_u8(b'O');
                    tuple(out, t);
                }
                None => {}
            }
            out.put_u8(b'N');
            tuple(out, &u.new);
        }
        Message::Delete(d) => {
            out.put_u8(b'D');
            xid(out, d.xid);
            out.put_u32(d.relation);
            match &d.old {
                OldTuple::Key(t) => {
                    out.put_u8(b'K');
                    tuple(out, t);
                }
                OldTuple::Full(t) => {
                    out.put_u8(b'O');
                    tuple(out, t);
                }
            }
        }
        Message::Truncate(t) => {
            out.put_u8(b'T');
            xid(out, t.xid);
            out.put_u32(t.relations.len() as u32);
            out.put_u8(t.options);
            for r in &t.relations {
                out.put_u32(*r);
            }
        }
        Message::Message(m) => {
            out.put_u8(b'M');
            xid(out, m.xid);
            out.put_u8(u8::from(m.transactional));
            out.put_u64(m.lsn.0);
            string(out, &m.prefix);
            out.put_u32(m.content.len() as u32);
            out.put_slice(&m.content);
        }
        Message::StreamStart(s) => {
            out.put_u8(b'S');
            out.put_u32(s.xid);
            out.put_u8(u8::from(s.first_segment));
        }
        Message::StreamStop => out.put_u8(b'E'),
        Message::StreamCommit(c) => {
            out.put_u8(b'c');
            out.put_u32(c.xid);
            out.put_u8(c.flags);
            out.put_u64(c.commit_lsn.0);
            out.put_u64(c.end_lsn.0);
            out.put_i64(c.commit_time);
        }
        Message::StreamAbort(a) => {
            out.put_u8(b'A');
            out.put_u32(a.xid);
            out.put_u32(a.subxid);
            if let (Some(lsn), Some(time)) = (a.abort_lsn, a.abort_time) {
                out.put_u64(lsn.0);
                out.put_i64(time);
            }
        }
        Message::BeginPrepare(p) => {
            out.put_u8(b'b');
            out.put_u64(p.prepare_lsn.0);
            out.put_u64(p.end_lsn.0);
            out.put_i64(p.prepare_time);
            out.put_u32(p.xid);
            string(out, &p.gid);
        }
        Message::Prepare(p) | Message::StreamPrepare(p) => {
            out.put_u8(if matches!(message, Message::Prepare(_)) {
                b'P'
            } else {
                b'p'
            });
            out.put_u8(p.flags);
            out.put_u64(p.prepare_lsn.0);
            out.put_u64(p.end_lsn.0);
            out.put_i64(p.prepare_time);
            out.put_u32(p.xid);
            string(out, &p.gid);
        }
        Message::CommitPrepared(c) => {
            out.put_u8(b'K');
            out.put_u8(c.flags);
            out.put_u64(c.commit_lsn.0);
            out.put_u64(c.end_lsn.0);
            out.put_i64(c.commit_time);
            out.put_u32(c.xid);
            string(out, &c.gid);
        }
        Message::RollbackPrepared(r) => {
            out.put_u8(b'r');
            out.put_u8(r.flags);
            out.put_u64(r.prepare_end_lsn.0);
            out.put_u64(r.rollback_end_lsn.0);
            out.put_i64(r.prepare_time);
            out.put_i64(r.rollback_time);
            out.put_u32(r.xid);
            string(out, &r.gid);
        }
    }
}

fn string(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn tuple(out: &mut BytesMut, t: &TupleData) {
    out.put_i16(t.columns.len() as i16);
    for c in &t.columns {
        match c {
            Column::Null => out.put_u8(b'n'),
            Column::UnchangedToast => out.put_u8(b'u'),
            Column::Text(b) | Column::Binary(b) => {
                out.put_u8(if matches!(c, Column::Text(_)) {
                    b't'
                } else {
                    b'b'
                });
                out.put_u32(b.len() as u32);
                out.put_slice(b);
            }
        }
    }
}
