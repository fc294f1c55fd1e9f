//! Property tests: no input makes the decoders panic, generated messages round-trip, and
//! every truncation of a valid message is an error that leaves the decoder's state alone.

use bytes::Bytes;
use proptest::prelude::*;

use super::encode::{encode, encode_replication};
use crate::pgoutput::*;

/// Every decoder state: version × parallel streaming × inside a streamed block.
fn any_decoder() -> impl Strategy<Value = Decoder> {
    (0..4usize, any::<bool>(), any::<bool>()).prop_map(|(v, parallel, in_stream)| {
        Decoder::with_state(ProtocolVersion::ALL[v], parallel, in_stream)
    })
}

/// A decoder state PostgreSQL can actually be in (streamed blocks need v2+).
fn real_decoder() -> impl Strategy<Value = Decoder> {
    any_decoder().prop_map(|d| {
        if d.version() == ProtocolVersion::V1 {
            Decoder::new(ProtocolVersion::V1)
        } else {
            d
        }
    })
}

fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn nonempty_name() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,12}"
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn ts() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

fn blob(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn value() -> impl Strategy<Value = TupleValue> {
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        blob(48).prop_map(TupleValue::Text),
        blob(48).prop_map(TupleValue::Binary),
    ]
}

fn tuple_of(len: usize) -> impl Strategy<Value = TupleData> {
    proptest::collection::vec(value(), len).prop_map(|columns| TupleData { columns })
}

fn tuple() -> impl Strategy<Value = TupleData> {
    (0..8usize).prop_flat_map(tuple_of)
}

fn old_tuple_of(len: usize) -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple_of(len).prop_map(OldTuple::Key),
        tuple_of(len).prop_map(OldTuple::Full),
    ]
}

fn identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn column() -> impl Strategy<Value = Column> {
    (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| Column {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    )
}

/// Messages that may appear inside or outside a streamed block; `xid` is the prefix.
fn data_message(xid: Option<u32>) -> BoxedStrategy<Message> {
    prop_oneof![
        (
            any::<u32>(),
            nonempty_name(),
            name(),
            identity(),
            proptest::collection::vec(column(), 0..6)
        )
            .prop_map(move |(id, namespace, name, replica_identity, columns)| {
                Message::Relation(Relation {
                    xid,
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }),
        (any::<u32>(), nonempty_name(), name()).prop_map(move |(id, namespace, name)| {
            Message::Type(TypeMessage {
                xid,
                id,
                namespace,
                name,
            })
        }),
        (any::<u32>(), tuple()).prop_map(move |(relation_id, new)| {
            Message::Insert(Insert {
                xid,
                relation_id,
                new,
            })
        }),
        (
            any::<u32>(),
            (0..8usize).prop_flat_map(|n| (proptest::option::of(old_tuple_of(n)), tuple_of(n)))
        )
            .prop_map(move |(relation_id, (old, new))| {
                Message::Update(Update {
                    xid,
                    relation_id,
                    old,
                    new,
                })
            }),
        (any::<u32>(), (0..8usize).prop_flat_map(old_tuple_of)).prop_map(
            move |(relation_id, old)| {
                Message::Delete(Delete {
                    xid,
                    relation_id,
                    old,
                })
            }
        ),
        (any::<u8>(), proptest::collection::vec(any::<u32>(), 0..6)).prop_map(
            move |(options, relation_ids)| {
                Message::Truncate(Truncate {
                    xid,
                    options,
                    relation_ids,
                })
            }
        ),
        (any::<u8>(), lsn(), name(), blob(64)).prop_map(move |(flags, lsn, prefix, content)| {
            Message::LogicalMessage(LogicalMessage {
                xid,
                flags,
                lsn,
                prefix,
                content,
            })
        }),
        (lsn(), name()).prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
    ]
    .boxed()
}

fn prepare() -> impl Strategy<Value = Prepare> {
    (any::<u8>(), lsn(), lsn(), ts(), any::<u32>(), name()).prop_map(
        |(flags, prepare_lsn, end_lsn, timestamp, xid, gid)| Prepare {
            flags,
            prepare_lsn,
            end_lsn,
            timestamp,
            xid,
            gid,
        },
    )
}

/// Messages valid outside a streamed block for this version.
fn outside_message(version: ProtocolVersion, parallel: bool) -> BoxedStrategy<Message> {
    let mut options: Vec<BoxedStrategy<Message>> = vec![
        data_message(None),
        (lsn(), ts(), any::<u32>())
            .prop_map(|(final_lsn, timestamp, xid)| {
                Message::Begin(Begin {
                    final_lsn,
                    timestamp,
                    xid,
                })
            })
            .boxed(),
        (any::<u8>(), lsn(), lsn(), ts())
            .prop_map(|(flags, commit_lsn, end_lsn, timestamp)| {
                Message::Commit(Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    timestamp,
                })
            })
            .boxed(),
    ];
    if version >= ProtocolVersion::V2 {
        options.push(
            (any::<u32>(), any::<bool>())
                .prop_map(|(xid, first_segment)| {
                    Message::StreamStart(StreamStart { xid, first_segment })
                })
                .boxed(),
        );
        options.push(
            (any::<u32>(), any::<u8>(), lsn(), lsn(), ts())
                .prop_map(|(xid, flags, commit_lsn, end_lsn, timestamp)| {
                    Message::StreamCommit(StreamCommit {
                        xid,
                        flags,
                        commit_lsn,
                        end_lsn,
                        timestamp,
                    })
                })
                .boxed(),
        );
        options.push(
            (any::<u32>(), any::<u32>(), lsn(), ts())
                .prop_map(move |(xid, subxid, abort_lsn, abort_time)| {
                    Message::StreamAbort(StreamAbort {
                        xid,
                        subxid,
                        parallel: parallel.then_some(ParallelAbortInfo {
                            abort_lsn,
                            abort_time,
                        }),
                    })
                })
                .boxed(),
        );
    }
    if version >= ProtocolVersion::V3 {
        options.push(
            (lsn(), lsn(), ts(), any::<u32>(), name())
                .prop_map(|(prepare_lsn, end_lsn, timestamp, xid, gid)| {
                    Message::BeginPrepare(BeginPrepare {
                        prepare_lsn,
                        end_lsn,
                        timestamp,
                        xid,
                        gid,
                    })
                })
                .boxed(),
        );
        options.push(prepare().prop_map(Message::Prepare).boxed());
        options.push(prepare().prop_map(Message::StreamPrepare).boxed());
        options.push(
            (any::<u8>(), lsn(), lsn(), ts(), any::<u32>(), name())
                .prop_map(|(flags, commit_lsn, end_lsn, timestamp, xid, gid)| {
                    Message::CommitPrepared(CommitPrepared {
                        flags,
                        commit_lsn,
                        end_lsn,
                        timestamp,
                        xid,
                        gid,
                    })
                })
                .boxed(),
        );
        options.push(
            (any::<u8>(), lsn(), lsn(), ts(), ts(), any::<u32>(), name())
                .prop_map(
                    |(
                        flags,
                        prepare_end_lsn,
                        rollback_end_lsn,
                        prepare_time,
                        rollback_time,
                        xid,
                        gid,
                    )| {
                        Message::RollbackPrepared(RollbackPrepared {
                            flags,
                            prepare_end_lsn,
                            rollback_end_lsn,
                            prepare_time,
                            rollback_time,
                            xid,
                            gid,
                        })
                    },
                )
                .boxed(),
        );
    }
    proptest::strategy::Union::new(options).boxed()
}

/// A decoder state PostgreSQL can be in, and a message it may send in that state.
fn state_and_message() -> impl Strategy<Value = (Decoder, Message)> {
    real_decoder().prop_flat_map(|d| {
        let messages = if d.in_stream() {
            prop_oneof![
                4 => any::<u32>().prop_flat_map(|xid| data_message(Some(xid))),
                1 => Just(Message::StreamStop),
            ]
            .boxed()
        } else {
            outside_message(d.version(), d.parallel_streaming())
        };
        (Just(d), messages)
    })
}

fn replication_message() -> impl Strategy<Value = ReplicationMessage> {
    prop_oneof![
        (lsn(), lsn(), ts(), blob(64)).prop_map(|(wal_start, wal_end, server_time, data)| {
            ReplicationMessage::XLogData(XLogData {
                wal_start,
                wal_end,
                server_time,
                data,
            })
        }),
        (lsn(), ts(), any::<bool>()).prop_map(|(wal_end, server_time, reply_requested)| {
            ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end,
                server_time,
                reply_requested,
            })
        }),
    ]
}

/// A type byte pgoutput or the framing knows (or a random one), then random bytes: reaches
/// deeper into the decoders than fully random input.
fn plausible_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tags: Vec<u8> = b"BCORYIUDTMSEcAbPKrpwk".to_vec();
    (
        prop_oneof![proptest::sample::select(tags), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(tag, mut rest)| {
            rest.insert(0, tag);
            rest
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics_in_any_state(
        decoder in any_decoder(),
        bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), plausible_bytes()],
    ) {
        let mut d = decoder.clone();
        let result = d.decode(Bytes::from(bytes.clone()));
        if result.is_err() {
            prop_assert_eq!(&d, &decoder, "a failed decode changed the state");
        }
        let _ = ReplicationMessage::decode(Bytes::from(bytes));
    }

    #[test]
    fn encoded_messages_decode_to_themselves_and_move_the_stream_state(
        (decoder, message) in state_and_message()
    ) {
        let mut d = decoder.clone();
        let decoded = d.decode(encode(&message));
        prop_assert_eq!(decoded.as_ref(), Ok(&message));
        let expect_in_stream = match message {
            Message::StreamStart(_) => true,
            Message::StreamStop => false,
            _ => decoder.in_stream(),
        };
        prop_assert_eq!(d.in_stream(), expect_in_stream);
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error((decoder, message) in state_and_message()) {
        let bytes = encode(&message);
        for len in 0..bytes.len() {
            let mut d = decoder.clone();
            let result = d.decode(bytes.slice(..len));
            prop_assert!(result.is_err(), "prefix of {} bytes decoded: {:?}", len, result);
            prop_assert_eq!(&d, &decoder);
        }
    }

    #[test]
    fn a_valid_message_with_an_extra_byte_is_an_error(
        (decoder, message) in state_and_message(),
        extra in any::<u8>(),
    ) {
        let mut bytes = encode(&message).to_vec();
        bytes.push(extra);
        let mut d = decoder.clone();
        prop_assert!(d.decode(Bytes::from(bytes)).is_err());
    }

    #[test]
    fn replication_messages_round_trip(message in replication_message()) {
        prop_assert_eq!(ReplicationMessage::decode(encode_replication(&message)), Ok(message));
    }

    #[test]
    fn every_truncation_of_a_keepalive_is_an_error(message in replication_message()) {
        let bytes = encode_replication(&message);
        // XLogData's payload has no length of its own: only its 25-byte header can be cut.
        let cut_below = match message {
            ReplicationMessage::XLogData(_) => 25,
            ReplicationMessage::PrimaryKeepalive(_) => bytes.len(),
        };
        for len in 0..cut_below {
            prop_assert!(ReplicationMessage::decode(bytes.slice(..len)).is_err());
        }
    }

    #[test]
    fn lsn_display_and_parse_round_trip(n in any::<u64>()) {
        let lsn = Lsn(n);
        prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        prop_assert_eq!(lsn.to_string().to_lowercase().parse::<Lsn>(), Ok(lsn));
    }

    #[test]
    fn lsn_parsing_arbitrary_strings_never_panics(s in "\\PC{0,24}") {
        let _ = s.parse::<Lsn>();
    }

    #[test]
    fn timestamps_convert_to_unix_and_back(micros in any::<i64>()) {
        let pg = PgTimestamp(micros);
        if let Some(unix) = pg.to_unix_micros() {
            prop_assert_eq!(PgTimestamp::from_unix_micros(unix), Some(pg));
        }
        if let Some(time) = pg.to_system_time() {
            prop_assert_eq!(PgTimestamp::from_system_time(time), Some(pg));
        }
    }
}
