//! A test-only encoder: writes messages the way PostgreSQL's proto.c does, so tests can
//! build inputs from typed values and check round trips.

use bytes::{BufMut, Bytes, BytesMut};

use crate::pgoutput::*;

/// Encodes `message` as pgoutput bytes. Data messages write their `xid` when it is `Some`
/// (the caller keeps it consistent with the stream state); namespaces are written as given.
pub fn encode(message: &Message) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(message.tag());
    match message {
        Message::Begin(m) => {
            b.put_u64(m.final_lsn.0);
            b.put_i64(m.timestamp.0);
            b.put_u32(m.xid);
        }
        Message::Commit(m) => {
            b.put_u8(m.flags);
            b.put_u64(m.commit_lsn.0);
            b.put_u64(m.end_lsn.0);
            b.put_i64(m.timestamp.0);
        }
        Message::Origin(m) => {
            b.put_u64(m.commit_lsn.0);
            cstr(&mut b, &m.name);
        }
        Message::Relation(m) => {
            xid(&mut b, m.xid);
            b.put_u32(m.id);
            cstr(&mut b, &m.namespace);
            cstr(&mut b, &m.name);
            b.put_u8(m.replica_identity.as_byte());
            b.put_u16(m.columns.len() as u16);
            for c in &m.columns {
                b.put_u8(c.flags);
                cstr(&mut b, &c.name);
                b.put_u32(c.type_oid);
                b.put_i32(c.type_modifier);
            }
        }
        Message::Type(m) => {
            xid(&mut b, m.xid);
            b.put_u32(m.id);
            cstr(&mut b, &m.namespace);
            cstr(&mut b, &m.name);
        }
        Message::Insert(m) => {
            xid(&mut b, m.xid);
            b.put_u32(m.relation_id);
            b.put_u8(b'N');
            tuple(&mut b, &m.new);
        }
        Message::Update(m) => {
            xid(&mut b, m.xid);
            b.put_u32(m.relation_id);
            if let Some(old) = &m.old {
                old_tuple(&mut b, old);
            }
            b.put_u8(b'N');
            tuple(&mut b, &m.new);
        }
        Message::Delete(m) => {
            xid(&mut b, m.xid);
            b.put_u32(m.relation_id);
            old_tuple(&mut b, &m.old);
        }
        Message::Truncate(m) => {
            xid(&mut b, m.xid);
            b.put_i32(m.relation_ids.len() as i32);
            b.put_u8(m.options);
            for id in &m.relation_ids {
                b.put_u32(*id);
            }
        }
        Message::LogicalMessage(m) => {
            xid(&mut b, m.xid);
            b.put_u8(m.flags);
            b.put_u64(m.lsn.0);
            cstr(&mut b, &m.prefix);
            b.put_i32(m.content.len() as i32);
            b.put_slice(&m.content);
        }
        Message::StreamStart(m) => {
            b.put_u32(m.xid);
            b.put_u8(u8::from(m.first_segment));
        }
        Message::StreamStop => {}
        Message::StreamCommit(m) => {
            b.put_u32(m.xid);
            b.put_u8(m.flags);
            b.put_u64(m.commit_lsn.0);
            b.put_u64(m.end_lsn.0);
            b.put_i64(m.timestamp.0);
        }
        Message::StreamAbort(m) => {
            b.put_u32(m.xid);
            b.put_u32(m.subxid);
            if let Some(p) = &m.parallel {
                b.put_u64(p.abort_lsn.0);
                b.put_i64(p.abort_time.0);
            }
        }
        Message::BeginPrepare(m) => {
            b.put_u64(m.prepare_lsn.0);
            b.put_u64(m.end_lsn.0);
            b.put_i64(m.timestamp.0);
            b.put_u32(m.xid);
            cstr(&mut b, &m.gid);
        }
        Message::Prepare(m) | Message::StreamPrepare(m) => {
            b.put_u8(m.flags);
            b.put_u64(m.prepare_lsn.0);
            b.put_u64(m.end_lsn.0);
            b.put_i64(m.timestamp.0);
            b.put_u32(m.xid);
            cstr(&mut b, &m.gid);
        }
        Message::CommitPrepared(m) => {
            b.put_u8(m.flags);
            b.put_u64(m.commit_lsn.0);
            b.put_u64(m.end_lsn.0);
            b.put_i64(m.timestamp.0);
            b.put_u32(m.xid);
            cstr(&mut b, &m.gid);
        }
        Message::RollbackPrepared(m) => {
            b.put_u8(m.flags);
            b.put_u64(m.prepare_end_lsn.0);
            b.put_u64(m.rollback_end_lsn.0);
            b.put_i64(m.prepare_time.0);
            b.put_i64(m.rollback_time.0);
            b.put_u32(m.xid);
            cstr(&mut b, &m.gid);
        }
    }
    b.freeze()
}

fn xid(b: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        b.put_u32(xid);
    }
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

fn old_tuple(b: &mut BytesMut, old: &OldTuple) {
    match old {
        OldTuple::Key(t) => {
            b.put_u8(b'K');
            tuple(b, t);
        }
        OldTuple::Full(t) => {
            b.put_u8(b'O');
            tuple(b, t);
        }
    }
}

pub fn tuple(b: &mut BytesMut, t: &TupleData) {
    b.put_u16(t.columns.len() as u16);
    for v in &t.columns {
        match v {
            TupleValue::Null => b.put_u8(b'n'),
            TupleValue::UnchangedToast => b.put_u8(b'u'),
            TupleValue::Text(x) => {
                b.put_u8(b't');
                b.put_i32(x.len() as i32);
                b.put_slice(x);
            }
            TupleValue::Binary(x) => {
                b.put_u8(b'b');
                b.put_i32(x.len() as i32);
                b.put_slice(x);
            }
        }
    }
}

/// Encodes a server-side replication CopyData payload (`w` or `k`).
pub fn encode_replication(message: &ReplicationMessage) -> Bytes {
    let mut b = BytesMut::new();
    match message {
        ReplicationMessage::XLogData(x) => {
            b.put_u8(b'w');
            b.put_u64(x.wal_start.0);
            b.put_u64(x.wal_end.0);
            b.put_i64(x.server_time.0);
            b.put_slice(&x.data);
        }
        ReplicationMessage::PrimaryKeepalive(k) => {
            b.put_u8(b'k');
            b.put_u64(k.wal_end.0);
            b.put_i64(k.server_time.0);
            b.put_u8(u8::from(k.reply_requested));
        }
    }
    b.freeze()
}

/// Shorthand for a text value.
pub fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

/// Shorthand for a tuple.
pub fn row(values: Vec<TupleValue>) -> TupleData {
    TupleData { columns: values }
}
