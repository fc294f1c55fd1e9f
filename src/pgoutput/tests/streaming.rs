//! Unit tests: streamed transactions (protocol v2+), two-phase messages (v3+), and the
//! stream state the decoder keeps.

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{encode, row, text};
use super::messages::{decode_v1, relation_users, streaming};
use crate::pgoutput::*;

#[test]
fn stream_start_enters_a_streamed_block_where_data_messages_carry_the_xid() {
    let mut d = Decoder::new(ProtocolVersion::V2);
    assert_eq!(
        d.decode(Bytes::from_static(b"S\x00\x00\x02\x9a\x01"))
            .unwrap(),
        Message::StreamStart(StreamStart {
            xid: 666,
            first_segment: true
        })
    );
    assert!(d.in_stream());
    // Insert: type, xid 666, relation 9, 'N', one null column.
    let m = d
        .decode(Bytes::from_static(
            b"I\x00\x00\x02\x9a\x00\x00\x00\x09N\x00\x01n",
        ))
        .unwrap();
    assert_eq!(
        m,
        Message::Insert(Insert {
            xid: Some(666),
            relation_id: 9,
            new: row(vec![TupleValue::Null]),
        })
    );
    assert_eq!(
        d.decode(Bytes::from_static(b"E")).unwrap(),
        Message::StreamStop
    );
    assert!(!d.in_stream());
    // The same bytes outside the block: the xid would be read as the relation id, and the
    // message is then malformed.
    assert!(d
        .decode(Bytes::from_static(
            b"I\x00\x00\x02\x9a\x00\x00\x00\x09N\x00\x01n"
        ))
        .is_err());
}

#[test]
fn every_data_message_in_a_streamed_block_carries_the_xid() {
    let xid = Some(77);
    let messages = vec![
        Message::Relation(relation_users(xid, &[("id", 20, true)])),
        Message::Type(TypeMessage {
            xid,
            id: 5,
            namespace: "public".into(),
            name: "mood".into(),
        }),
        Message::Insert(Insert {
            xid,
            relation_id: 16_384,
            new: row(vec![text("1")]),
        }),
        Message::Update(Update {
            xid,
            relation_id: 16_384,
            old: None,
            new: row(vec![TupleValue::UnchangedToast]),
        }),
        Message::Delete(Delete {
            xid,
            relation_id: 16_384,
            old: OldTuple::Key(row(vec![text("1")])),
        }),
        Message::Truncate(Truncate {
            xid,
            options: 0,
            relation_ids: vec![16_384],
        }),
        Message::LogicalMessage(LogicalMessage {
            xid,
            flags: 1,
            lsn: Lsn(1),
            prefix: "p".into(),
            content: Bytes::from_static(b"c"),
        }),
    ];
    for version in [
        ProtocolVersion::V2,
        ProtocolVersion::V3,
        ProtocolVersion::V4,
    ] {
        let mut d = streaming(version);
        for m in &messages {
            let bytes = encode(m);
            assert_eq!(&bytes[1..5], &77u32.to_be_bytes(), "{m:?}");
            assert_eq!(&d.decode(bytes).unwrap(), m);
        }
    }
}

#[test]
fn origin_inside_a_streamed_block_has_no_xid() {
    let mut d = streaming(ProtocolVersion::V2);
    let m = d
        .decode(Bytes::from_static(
            b"O\x00\x00\x00\x00\x00\x00\x00\x07n\x00",
        ))
        .unwrap();
    assert!(matches!(m, Message::Origin(_)));
}

#[test]
fn stream_commit_carries_xid_flags_lsns_and_time() {
    let sc = StreamCommit {
        xid: 666,
        flags: 0,
        commit_lsn: Lsn(0x100),
        end_lsn: Lsn(0x130),
        timestamp: PgTimestamp(1),
    };
    let bytes = encode(&Message::StreamCommit(sc.clone()));
    assert_eq!(bytes.len(), 1 + 4 + 1 + 8 + 8 + 8);
    let mut d = Decoder::new(ProtocolVersion::V2);
    assert_eq!(d.decode(bytes).unwrap(), Message::StreamCommit(sc));
}

#[test]
fn stream_abort_has_no_abort_info_unless_streaming_is_parallel() {
    let bytes = Bytes::from_static(b"A\x00\x00\x02\x9a\x00\x00\x02\x9b");
    for version in [
        ProtocolVersion::V2,
        ProtocolVersion::V3,
        ProtocolVersion::V4,
    ] {
        let m = Decoder::new(version).decode(bytes.clone()).unwrap();
        assert_eq!(
            m,
            Message::StreamAbort(StreamAbort {
                xid: 666,
                subxid: 667,
                parallel: None
            })
        );
    }
    // Parallel streaming needs v4: below it the option is ignored.
    let d = Decoder::new(ProtocolVersion::V3).with_parallel_streaming(true);
    assert!(!d.parallel_streaming());
}

#[test]
fn stream_abort_under_parallel_streaming_carries_abort_lsn_and_time() {
    let mut d = Decoder::new(ProtocolVersion::V4).with_parallel_streaming(true);
    let mut b = BytesMut::from(&b"A\x00\x00\x02\x9a\x00\x00\x02\x9a"[..]);
    b.put_u64(0x5000);
    b.put_i64(123);
    assert_eq!(
        d.decode(b.freeze()).unwrap(),
        Message::StreamAbort(StreamAbort {
            xid: 666,
            subxid: 666,
            parallel: Some(ParallelAbortInfo {
                abort_lsn: Lsn(0x5000),
                abort_time: PgTimestamp(123)
            }),
        })
    );
    // Without the fields, the message is truncated.
    let err = d
        .decode(Bytes::from_static(b"A\x00\x00\x02\x9a\x00\x00\x02\x9a"))
        .unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Truncated {
            field: "abort LSN",
            ..
        }
    ));
}

#[test]
fn two_phase_messages_round_trip_through_the_v3_decoder() {
    let messages = vec![
        Message::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(10),
            end_lsn: Lsn(20),
            timestamp: PgTimestamp(30),
            xid: 40,
            gid: "gid-1".into(),
        }),
        Message::Prepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(10),
            end_lsn: Lsn(20),
            timestamp: PgTimestamp(30),
            xid: 40,
            gid: "gid-1".into(),
        }),
        Message::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(50),
            end_lsn: Lsn(60),
            timestamp: PgTimestamp(70),
            xid: 40,
            gid: "gid-1".into(),
        }),
        Message::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(20),
            rollback_end_lsn: Lsn(80),
            prepare_time: PgTimestamp(30),
            rollback_time: PgTimestamp(90),
            xid: 40,
            gid: "gid-1".into(),
        }),
        Message::StreamPrepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(10),
            end_lsn: Lsn(20),
            timestamp: PgTimestamp(30),
            xid: 40,
            gid: "gid-2".into(),
        }),
    ];
    let mut d = Decoder::new(ProtocolVersion::V3);
    for m in messages {
        assert_eq!(d.decode(encode(&m)).unwrap(), m);
    }
}

#[test]
fn begin_prepare_layout_matches_the_documentation() {
    let mut b = BytesMut::new();
    b.put_u8(b'b');
    b.put_u64(1);
    b.put_u64(2);
    b.put_i64(3);
    b.put_u32(4);
    b.put_slice(b"g\0");
    let m = Decoder::new(ProtocolVersion::V3)
        .decode(b.freeze())
        .unwrap();
    let Message::BeginPrepare(bp) = m else {
        panic!()
    };
    assert_eq!(
        (
            bp.prepare_lsn,
            bp.end_lsn,
            bp.timestamp,
            bp.xid,
            bp.gid.as_str()
        ),
        (Lsn(1), Lsn(2), PgTimestamp(3), 4, "g")
    );
}

#[test]
fn streaming_messages_are_unknown_to_protocol_v1() {
    for bytes in [
        &b"S\x00\x00\x00\x01\x01"[..],
        b"E",
        b"A\0\0\0\x01\0\0\0\x01",
    ] {
        let err = decode_v1(bytes).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::NotInProtocolVersion {
                tag: bytes[0],
                version: 1
            }
        );
        assert_eq!(err.offset, 0);
    }
}

#[test]
fn two_phase_messages_need_protocol_v3() {
    let bytes = encode(&Message::Prepare(Prepare {
        flags: 0,
        prepare_lsn: Lsn(1),
        end_lsn: Lsn(2),
        timestamp: PgTimestamp(3),
        xid: 4,
        gid: "g".into(),
    }));
    let err = Decoder::new(ProtocolVersion::V2).decode(bytes).unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::NotInProtocolVersion {
            tag: b'P',
            version: 2
        }
    ));
}

#[test]
fn stream_start_inside_a_streamed_block_is_rejected_and_the_state_is_kept() {
    let mut d = streaming(ProtocolVersion::V2);
    let before = d.clone();
    let err = d
        .decode(Bytes::from_static(b"S\x00\x00\x00\x01\x00"))
        .unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::UnexpectedInStreamState {
            tag: b'S',
            in_stream: true
        }
    );
    assert_eq!(d, before);
}

#[test]
fn stream_stop_outside_a_streamed_block_is_rejected() {
    let err = Decoder::new(ProtocolVersion::V2)
        .decode(Bytes::from_static(b"E"))
        .unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::UnexpectedInStreamState {
            tag: b'E',
            in_stream: false
        }
    );
}

#[test]
fn transaction_boundaries_inside_a_streamed_block_are_rejected() {
    let mut d = streaming(ProtocolVersion::V3);
    let begin =
        b"B\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let err = d.decode(Bytes::from_static(begin)).unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::UnexpectedInStreamState { tag: b'B', .. }
    ));
    assert!(d.in_stream());
}

#[test]
fn reset_leaves_the_streamed_block() {
    let mut d = streaming(ProtocolVersion::V2);
    d.reset();
    assert!(!d.in_stream());
}
