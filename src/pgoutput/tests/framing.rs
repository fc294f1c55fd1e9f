//! Unit tests: replication framing (XLogData, keepalive, status update), LSN and timestamp
//! helpers, the relation cache.

use std::time::{Duration, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{row, text};
use crate::pgoutput::*;

#[test]
fn xlogdata_carries_wal_positions_clock_and_a_zero_copy_payload() {
    let mut b = BytesMut::new();
    b.put_u8(b'w');
    b.put_u64(0x16_B374_D848);
    b.put_u64(0x16_B374_D900);
    b.put_i64(777);
    b.put_slice(b"E");
    let input = b.freeze();
    let range = input.as_ptr_range();
    let ReplicationMessage::XLogData(x) = ReplicationMessage::decode(input.clone()).unwrap() else {
        panic!("not XLogData")
    };
    assert_eq!(x.wal_start.to_string(), "16/B374D848");
    assert_eq!(x.wal_end, Lsn(0x16_B374_D900));
    assert_eq!(x.server_time, PgTimestamp(777));
    assert_eq!(&x.data[..], b"E");
    assert!(range.contains(&x.data.as_ptr()));
}

#[test]
fn xlogdata_payload_feeds_the_pgoutput_decoder() {
    let mut b = BytesMut::new();
    b.put_u8(b'w');
    b.put_u64(1);
    b.put_u64(2);
    b.put_i64(3);
    b.put_slice(b"O\x00\x00\x00\x00\x00\x00\x00\x07n\x00");
    let ReplicationMessage::XLogData(x) = ReplicationMessage::decode(b.freeze()).unwrap() else {
        panic!()
    };
    let m = Decoder::new(ProtocolVersion::V1).decode(x.data).unwrap();
    assert!(matches!(m, Message::Origin(_)));
}

#[test]
fn xlogdata_with_an_empty_payload_is_accepted_and_the_empty_payload_is_a_decode_error() {
    let bytes = Bytes::from_static(&[
        b'w', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3,
    ]);
    let ReplicationMessage::XLogData(x) = ReplicationMessage::decode(bytes).unwrap() else {
        panic!()
    };
    assert!(x.data.is_empty());
    assert!(Decoder::new(ProtocolVersion::V1).decode(x.data).is_err());
}

#[test]
fn keepalive_carries_wal_end_clock_and_reply_request() {
    let mut b = BytesMut::new();
    b.put_u8(b'k');
    b.put_u64(0x1_0000_0000);
    b.put_i64(-1);
    b.put_u8(1);
    assert_eq!(
        ReplicationMessage::decode(b.freeze()).unwrap(),
        ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: "1/0".parse().unwrap(),
            server_time: PgTimestamp(-1),
            reply_requested: true,
        })
    );
}

#[test]
fn keepalive_with_trailing_or_missing_bytes_is_rejected() {
    let mut full = vec![b'k'];
    full.extend_from_slice(&[0; 17]);
    let mut longer = full.clone();
    longer.push(0);
    let err = ReplicationMessage::decode(Bytes::from(longer)).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { count: 1 });
    assert_eq!(err.offset, 18);
    let err = ReplicationMessage::decode(Bytes::copy_from_slice(&full[..17])).unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::Truncated {
            field: "reply requested",
            ..
        }
    ));
}

#[test]
fn unknown_replication_message_type_is_rejected() {
    let err = ReplicationMessage::decode(Bytes::from_static(b"r")).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownMessageType(b'r'));
    assert!(ReplicationMessage::decode(Bytes::new()).is_err());
}

#[test]
fn standby_status_update_encodes_three_lsns_clock_and_reply_flag() {
    let update = StandbyStatusUpdate {
        written: Lsn(0x0102_0304_0506_0708),
        flushed: Lsn(0x10),
        applied: Lsn(0x20),
        client_time: PgTimestamp(0x30),
        reply_requested: true,
    };
    let bytes = update.encode();
    let mut expected = vec![b'r', 1, 2, 3, 4, 5, 6, 7, 8];
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x10]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x20]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x30]);
    expected.push(1);
    assert_eq!(&bytes[..], &expected[..]);
    assert_eq!(bytes.len(), StandbyStatusUpdate::LEN);

    let mut buf = BytesMut::from(&b"prefix"[..]);
    StandbyStatusUpdate {
        reply_requested: false,
        ..update
    }
    .encode_into(&mut buf);
    assert_eq!(buf.len(), 6 + StandbyStatusUpdate::LEN);
    assert_eq!(buf[buf.len() - 1], 0);
}

#[test]
fn lsn_displays_and_parses_in_postgres_form() {
    let lsn: Lsn = "16/B374D848".parse().unwrap();
    assert_eq!(lsn, Lsn(0x0000_0016_B374_D848));
    assert_eq!(lsn.to_string(), "16/B374D848");
    assert_eq!(Lsn(0).to_string(), "0/0");
    assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    assert_eq!("ffffffff/ffffffff".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
    assert_eq!("0/00000001".parse::<Lsn>().unwrap(), Lsn(1));
    assert!(!Lsn::INVALID.is_valid());
    assert!(Lsn(1).is_valid());
    assert!(Lsn(1) < Lsn(2));
}

#[test]
fn lsn_parsing_rejects_malformed_strings() {
    for bad in [
        "",
        "0",
        "/",
        "0/",
        "/0",
        "1/2/3",
        "123456789/0",
        "0/123456789",
        "g/0",
        "+1/0",
        "-1/0",
        " 1/0",
        "1/0 ",
        "0x1/0",
    ] {
        let err = bad.parse::<Lsn>().unwrap_err();
        assert!(err.to_string().contains("invalid LSN"), "{bad:?}");
    }
}

#[test]
fn postgres_epoch_is_2000_01_01_in_unix_micros() {
    assert_eq!(PgTimestamp(0).to_unix_micros(), Some(946_684_800_000_000));
    assert_eq!(
        PgTimestamp(0).to_system_time(),
        Some(UNIX_EPOCH + Duration::from_secs(946_684_800))
    );
    assert_eq!(
        PgTimestamp(-946_684_800_000_000).to_system_time(),
        Some(UNIX_EPOCH)
    );
    assert_eq!(
        PgTimestamp::from_unix_micros(946_684_800_000_001),
        Some(PgTimestamp(1))
    );
    let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let pg = PgTimestamp::from_system_time(t).unwrap();
    assert_eq!(pg.to_system_time(), Some(t));
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        PgTimestamp::from_system_time(before)
            .unwrap()
            .to_unix_micros(),
        Some(-1_000_000)
    );
}

#[test]
fn infinite_and_overflowing_timestamps_have_no_unix_time() {
    assert_eq!(PgTimestamp(i64::MAX).to_unix_micros(), None);
    assert_eq!(PgTimestamp(i64::MIN).to_unix_micros(), None);
    assert_eq!(PgTimestamp(i64::MAX - 1).to_unix_micros(), None);
    assert_eq!(PgTimestamp::from_unix_micros(i64::MIN), None);
    assert_eq!(PgTimestamp(i64::MIN).to_system_time(), None);
}

fn relation(id: Oid, columns: &[&str]) -> Relation {
    Relation {
        xid: None,
        id,
        namespace: "public".into(),
        name: "agents".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .enumerate()
            .map(|(i, name)| Column {
                flags: u8::from(i == 0),
                name: (*name).into(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect(),
    }
}

#[test]
fn relation_resent_after_alter_table_replaces_the_cached_columns() {
    let mut cache = RelationCache::new();
    assert!(cache.observe(&Message::Relation(relation(7, &["id", "body"]))));
    let old_row = row(vec![text("1"), text("{}")]);
    let named = cache.named(7, &old_row).unwrap();
    assert_eq!(
        named.iter().map(|n| n.name()).collect::<Vec<_>>(),
        ["id", "body"]
    );
    assert!(named[0].column.is_key());

    // ALTER TABLE agents ADD COLUMN labels: PostgreSQL re-sends Relation 7.
    let previous = cache.insert(relation(7, &["id", "body", "labels"]));
    assert_eq!(previous.unwrap().columns.len(), 2);
    assert_eq!(cache.len(), 1);
    let new_row = row(vec![text("1"), text("{}"), TupleValue::Null]);
    let named = cache.named(7, &new_row).unwrap();
    assert_eq!(named[2].name(), "labels");
    assert_eq!(named[2].value, &TupleValue::Null);

    // A tuple shaped like the old description no longer fits.
    assert_eq!(
        cache.named(7, &old_row).unwrap_err(),
        RelationError::ColumnCountMismatch {
            relation_id: Some(7),
            expected: 3,
            found: 2
        }
    );
}

#[test]
fn tuple_of_an_unknown_relation_is_an_error() {
    let cache = RelationCache::new();
    let err = cache.named(99, &row(vec![])).unwrap_err();
    assert_eq!(err, RelationError::UnknownRelation(99));
    assert_eq!(
        err.to_string(),
        "no Relation message seen for relation id 99"
    );
}

#[test]
fn relation_cache_ignores_other_messages_and_can_forget() {
    let mut cache = RelationCache::new();
    assert!(!cache.observe(&Message::StreamStop));
    assert!(cache.is_empty());
    cache.insert(relation(1, &["a"]));
    cache.insert(relation(2, &["a"]));
    assert!(cache.remove(1).is_some());
    assert!(cache.get(1).is_none());
    assert!(cache.get(2).is_some());
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn unchanged_toast_is_filled_from_the_previous_row() {
    let previous = row(vec![text("1"), text("big"), TupleValue::UnchangedToast]);
    let mut new = row(vec![
        text("1"),
        TupleValue::UnchangedToast,
        TupleValue::UnchangedToast,
    ]);
    assert!(new.has_unchanged_toast());
    assert_eq!(new.fill_unchanged_from(&previous), Ok(1));
    assert_eq!(new.columns[1], text("big"));
    assert_eq!(new.columns[2], TupleValue::UnchangedToast);
    assert!(new.fill_unchanged_from(&row(vec![])).is_err());
}

#[test]
fn tuple_values_expose_text_as_str() {
    assert_eq!(text("héllo").as_str(), Some("héllo"));
    assert_eq!(TupleValue::Null.as_str(), None);
    assert_eq!(TupleValue::Text(Bytes::from_static(b"\xff")).as_str(), None);
    assert_eq!(TupleValue::Binary(Bytes::from_static(b"a")).as_str(), None);
}
