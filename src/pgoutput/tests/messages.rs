//! Unit tests: every pgoutput message type, decoded from hand-assembled bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{encode, row, text};
use crate::pgoutput::*;

fn v1() -> Decoder {
    Decoder::new(ProtocolVersion::V1)
}

pub(super) fn decode_v1(bytes: &[u8]) -> Result<Message, DecodeError> {
    v1().decode(Bytes::copy_from_slice(bytes))
}

/// A decoder inside a streamed block of `version`.
pub(super) fn streaming(version: ProtocolVersion) -> Decoder {
    let mut d = Decoder::new(version);
    d.decode(Bytes::from_static(b"S\x00\x00\x02\x9a\x01"))
        .unwrap();
    assert!(d.in_stream());
    d
}

pub(super) fn relation_users(xid: Option<u32>, columns: &[(&str, u32, bool)]) -> Relation {
    Relation {
        xid,
        id: 16_384,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .map(|&(name, type_oid, key)| Column {
                flags: u8::from(key),
                name: name.into(),
                type_oid,
                type_modifier: -1,
            })
            .collect(),
    }
}

#[test]
fn begin_carries_final_lsn_commit_time_and_xid() {
    let bytes =
        b"B\x00\x00\x00\x01\x02\x03\x04\x05\x00\x00\x00\x00\x00\x00\x00\x2a\x00\x00\x01\xf4";
    let m = decode_v1(bytes).unwrap();
    assert_eq!(
        m,
        Message::Begin(Begin {
            final_lsn: Lsn(0x0001_0203_0405),
            timestamp: PgTimestamp(42),
            xid: 500,
        })
    );
}

#[test]
fn commit_carries_flags_commit_lsn_end_lsn_and_time() {
    let mut b = BytesMut::new();
    b.put_u8(b'C');
    b.put_u8(0);
    b.put_u64(0x16_B374_D848);
    b.put_u64(0x16_B374_D878);
    b.put_i64(-5);
    let m = v1().decode(b.freeze()).unwrap();
    assert_eq!(
        m,
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: "16/B374D848".parse().unwrap(),
            end_lsn: "16/B374D878".parse().unwrap(),
            timestamp: PgTimestamp(-5),
        })
    );
}

#[test]
fn origin_carries_commit_lsn_and_name() {
    let m = decode_v1(b"O\x00\x00\x00\x00\x00\x00\x00\x07node_a\x00").unwrap();
    assert_eq!(
        m,
        Message::Origin(Origin {
            commit_lsn: Lsn(7),
            name: "node_a".into()
        })
    );
}

#[test]
fn relation_carries_names_replica_identity_and_columns_with_key_flags() {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(16_384);
    b.put_slice(b"public\0users\0");
    b.put_u8(b'f');
    b.put_u16(2);
    b.put_slice(b"\x01id\0");
    b.put_u32(20);
    b.put_i32(-1);
    b.put_slice(b"\x00name\0");
    b.put_u32(1043);
    b.put_i32(68);
    let Message::Relation(rel) = v1().decode(b.freeze()).unwrap() else {
        panic!("not a relation")
    };
    assert_eq!(rel.id, 16_384);
    assert_eq!(rel.namespace, "public");
    assert_eq!(rel.name, "users");
    assert_eq!(rel.replica_identity, ReplicaIdentity::Full);
    assert_eq!(rel.columns.len(), 2);
    assert!(rel.columns[0].is_key());
    assert!(!rel.columns[1].is_key());
    assert_eq!(rel.columns[1].name, "name");
    assert_eq!(rel.columns[1].type_oid, 1043);
    assert_eq!(rel.columns[1].type_modifier, 68);
    assert_eq!(rel.xid, None);
}

#[test]
fn relation_with_empty_namespace_is_pg_catalog() {
    let m = decode_v1(b"R\x00\x00\x00\x01\x00t\x00d\x00\x00").unwrap();
    let Message::Relation(rel) = m else { panic!() };
    assert_eq!(rel.namespace, "pg_catalog");
    assert!(rel.columns.is_empty());
}

#[test]
fn relation_with_unknown_replica_identity_is_rejected_at_its_byte() {
    let err = decode_v1(b"R\x00\x00\x00\x01s\x00t\x00x\x00\x00").unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownReplicaIdentity(b'x'));
    assert_eq!(err.offset, 9);
}

#[test]
fn relation_name_that_is_not_utf8_is_rejected_at_the_name() {
    let err = decode_v1(b"R\x00\x00\x00\x01public\x00\xff\xfe\x00d\x00\x00").unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::InvalidUtf8 {
            field: "relation name"
        }
    );
    assert_eq!(err.offset, 12);
}

#[test]
fn relation_name_without_nul_is_an_unterminated_string() {
    let err = decode_v1(b"R\x00\x00\x00\x01public\x00users").unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::UnterminatedString {
            field: "relation name"
        }
    );
}

#[test]
fn type_message_carries_oid_and_qualified_name() {
    let m = decode_v1(b"Y\x00\x00\x40\x00public\x00mood\x00").unwrap();
    assert_eq!(
        m,
        Message::Type(TypeMessage {
            xid: None,
            id: 0x4000,
            namespace: "public".into(),
            name: "mood".into()
        })
    );
}

#[test]
fn insert_decodes_text_null_and_binary_values() {
    let bytes = b"I\x00\x00\x40\x00N\x00\x03t\x00\x00\x00\x0242nb\x00\x00\x00\x02\xbe\xef";
    let m = decode_v1(bytes).unwrap();
    assert_eq!(
        m,
        Message::Insert(Insert {
            xid: None,
            relation_id: 0x4000,
            new: row(vec![
                text("42"),
                TupleValue::Null,
                TupleValue::Binary(Bytes::from_static(b"\xbe\xef"))
            ]),
        })
    );
}

#[test]
fn insert_values_are_zero_copy_slices_of_the_input() {
    let big = "x".repeat(1 << 20);
    let input = encode(&Message::Insert(Insert {
        xid: None,
        relation_id: 1,
        new: row(vec![text(&big)]),
    }));
    let range = input.as_ptr_range();
    let Message::Insert(ins) = v1().decode(input.clone()).unwrap() else {
        panic!()
    };
    let TupleValue::Text(value) = &ins.new.columns[0] else {
        panic!()
    };
    assert_eq!(value.len(), 1 << 20);
    assert!(range.contains(&value.as_ptr()), "value was copied");
}

#[test]
fn insert_without_new_tuple_marker_is_rejected() {
    let err = decode_v1(b"I\x00\x00\x40\x00K\x00\x00").unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::UnexpectedTupleMarker {
            expected: "'N'",
            found: b'K'
        }
    );
    assert_eq!(err.offset, 5);
}

#[test]
fn update_leaving_a_toasted_column_unchanged_sends_u_and_it_stays_distinct() {
    let bytes = b"U\x00\x00\x40\x00N\x00\x04t\x00\x00\x00\x017unt\x00\x00\x00\x01x";
    let Message::Update(up) = decode_v1(bytes).unwrap() else {
        panic!()
    };
    assert_eq!(up.old, None);
    assert_eq!(
        up.new.columns,
        vec![
            text("7"),
            TupleValue::UnchangedToast,
            TupleValue::Null,
            text("x")
        ]
    );
    assert!(up.new.has_unchanged_toast());
}

#[test]
fn update_with_changed_key_carries_the_old_key_tuple() {
    let up = Update {
        xid: None,
        relation_id: 9,
        old: Some(OldTuple::Key(row(vec![text("1"), TupleValue::Null]))),
        new: row(vec![text("2"), text("b")]),
    };
    let bytes = encode(&Message::Update(up.clone()));
    assert_eq!(&bytes[5..6], b"K");
    assert_eq!(v1().decode(bytes).unwrap(), Message::Update(up));
}

#[test]
fn update_under_replica_identity_full_carries_the_old_row() {
    let up = Update {
        xid: None,
        relation_id: 9,
        old: Some(OldTuple::Full(row(vec![text("1"), text("a")]))),
        new: row(vec![text("1"), text("b")]),
    };
    let bytes = encode(&Message::Update(up.clone()));
    assert_eq!(&bytes[5..6], b"O");
    let decoded = v1().decode(bytes).unwrap();
    let Message::Update(d) = &decoded else {
        panic!()
    };
    assert_eq!(d.old.as_ref().unwrap().tuple().columns[1], text("a"));
    assert_eq!(decoded, Message::Update(up));
}

#[test]
fn update_whose_old_and_new_tuples_differ_in_column_count_is_rejected() {
    let err = decode_v1(b"U\x00\x00\x00\x09K\x00\x01nN\x00\x02nn").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::CountMismatch {
            expected: 1,
            found: 2,
            ..
        }
    ));
    assert_eq!(err.offset, 9);
}

#[test]
fn update_with_unknown_tuple_marker_is_rejected() {
    let err = decode_v1(b"U\x00\x00\x00\x09X\x00\x00").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::UnexpectedTupleMarker { found: b'X', .. }
    ));
}

#[test]
fn delete_carries_key_or_full_old_tuple() {
    let key = decode_v1(b"D\x00\x00\x00\x09K\x00\x02t\x00\x00\x00\x015n").unwrap();
    assert_eq!(
        key,
        Message::Delete(Delete {
            xid: None,
            relation_id: 9,
            old: OldTuple::Key(row(vec![text("5"), TupleValue::Null])),
        })
    );
    let full = decode_v1(b"D\x00\x00\x00\x09O\x00\x01t\x00\x00\x00\x015").unwrap();
    assert!(matches!(
        full,
        Message::Delete(Delete {
            old: OldTuple::Full(_),
            ..
        })
    ));
}

#[test]
fn delete_with_new_tuple_marker_is_rejected() {
    let err = decode_v1(b"D\x00\x00\x00\x09N\x00\x00").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::UnexpectedTupleMarker { found: b'N', .. }
    ));
}

#[test]
fn unknown_tuple_kind_is_reported_at_its_byte() {
    let err = decode_v1(b"I\x00\x00\x00\x09N\x00\x02nx").unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownTupleKind(b'x'));
    assert_eq!(err.offset, 9);
}

#[test]
fn negative_value_length_is_rejected() {
    let err = decode_v1(b"I\x00\x00\x00\x09N\x00\x01t\xff\xff\xff\xff").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::NegativeLength { value: -1, .. }
    ));
    assert_eq!(err.offset, 9);
}

#[test]
fn value_length_beyond_the_input_is_truncation_not_allocation() {
    let err = decode_v1(b"I\x00\x00\x00\x09N\x00\x01t\x7f\xff\xff\xffabc").unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::Truncated {
            field: "text value",
            needed: 0x7fff_ffff,
            available: 3
        }
    );
}

#[test]
fn huge_column_count_with_little_input_is_truncation() {
    let err = decode_v1(b"I\x00\x00\x00\x09N\xff\xffn").unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::Truncated { .. }));
}

#[test]
fn truncate_carries_options_and_relation_ids() {
    let Message::Truncate(t) =
        decode_v1(b"T\x00\x00\x00\x02\x03\x00\x00\x40\x00\x00\x00\x40\x01").unwrap()
    else {
        panic!()
    };
    assert!(t.cascade());
    assert!(t.restart_identity());
    assert_eq!(t.relation_ids, vec![0x4000, 0x4001]);
}

#[test]
fn truncate_with_negative_or_huge_count_is_rejected() {
    let neg = decode_v1(b"T\xff\xff\xff\xff\x00").unwrap_err();
    assert!(matches!(neg.kind, DecodeErrorKind::NegativeLength { .. }));
    let huge = decode_v1(b"T\x7f\xff\xff\xff\x00\x00\x00\x00\x01").unwrap_err();
    assert!(matches!(huge.kind, DecodeErrorKind::Truncated { .. }));
}

#[test]
fn logical_message_carries_flags_lsn_prefix_and_content() {
    let m = decode_v1(b"M\x01\x00\x00\x00\x00\x00\x00\x00\x10ark\x00\x00\x00\x00\x02hi").unwrap();
    let Message::LogicalMessage(lm) = m else {
        panic!()
    };
    assert!(lm.is_transactional());
    assert_eq!(lm.lsn, Lsn(16));
    assert_eq!(lm.prefix, "ark");
    assert_eq!(&lm.content[..], b"hi");
}

#[test]
fn unknown_message_type_is_reported_at_offset_zero() {
    let err = decode_v1(b"Z\x00").unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownMessageType(b'Z'));
    assert_eq!(err.offset, 0);
    assert_eq!(err.to_string(), "unknown message type 'Z' at byte 0");
}

#[test]
fn empty_input_is_truncated() {
    let err = decode_v1(b"").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Truncated {
            field: "message type",
            needed: 1,
            available: 0
        }
    ));
}

#[test]
fn trailing_bytes_after_a_complete_message_are_rejected() {
    let mut bytes = encode(&Message::StreamStop).to_vec();
    bytes.push(0);
    let err = streaming(ProtocolVersion::V2)
        .decode(Bytes::from(bytes))
        .unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { count: 1 });
    assert_eq!(err.offset, 1);
    assert_eq!(
        err.to_string(),
        "1 trailing bytes after the message at byte 1"
    );
}

#[test]
fn truncated_begin_names_the_field_and_offset() {
    let err = decode_v1(b"B\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00").unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::Truncated {
            field: "commit timestamp",
            needed: 8,
            available: 2
        }
    );
    assert_eq!(err.offset, 9);
    assert_eq!(
        err.to_string(),
        "input truncated in commit timestamp: needed 8 bytes, 2 left at byte 9"
    );
}

#[test]
fn decode_errors_are_std_errors() {
    fn takes_error(_: &dyn std::error::Error) {}
    takes_error(&decode_v1(b"").unwrap_err());
    let err = decode_v1(b"\x01").unwrap_err();
    assert_eq!(err.to_string(), "unknown message type 0x01 at byte 0");
}
