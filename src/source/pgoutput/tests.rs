//! Decoder tests: byte-exact examples from the protocol documentation's layouts,
//! round trips of arbitrary messages, and no panic on arbitrary or cut input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

const PLAIN: DecodeContext = DecodeContext { in_stream: false };
const STREAM: DecodeContext = DecodeContext { in_stream: true };

fn bytes(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

#[test]
fn begin_and_commit_layouts() {
    let begin = bytes(&[
        b"B",
        &0x16_B374_D848u64.to_be_bytes(),
        &5i64.to_be_bytes(),
        &742u32.to_be_bytes(),
    ]);
    assert_eq!(
        decode(&begin, PLAIN).unwrap(),
        Message::Begin(Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_time: 5,
            xid: 742
        })
    );
    let commit = bytes(&[
        b"C",
        &[0],
        &10u64.to_be_bytes(),
        &20u64.to_be_bytes(),
        &7i64.to_be_bytes(),
    ]);
    assert_eq!(
        decode(&commit, PLAIN).unwrap(),
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(20),
            commit_time: 7
        })
    );
}

#[test]
fn relation_and_insert_layouts() {
    let relation = bytes(&[
        b"R",
        &16385u32.to_be_bytes(),
        b"public\0orders\0",
        b"d",
        &2i16.to_be_bytes(),
        &[1],
        b"id\0",
        &23u32.to_be_bytes(),
        &(-1i32).to_be_bytes(),
        &[0],
        b"note\0",
        &25u32.to_be_bytes(),
        &(-1i32).to_be_bytes(),
    ]);
    let Message::Relation(r) = decode(&relation, PLAIN).unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            r.oid,
            r.namespace.as_str(),
            r.name.as_str(),
            r.replica_identity
        ),
        (16385, "public", "orders", b'd')
    );
    assert!(r.columns[0].is_key() && !r.columns[1].is_key());
    assert_eq!(r.columns[1].type_oid, 25);

    let insert = bytes(&[
        b"I",
        &16385u32.to_be_bytes(),
        b"N",
        &3i16.to_be_bytes(),
        b"t",
        &2u32.to_be_bytes(),
        b"42",
        b"n",
        b"u",
    ]);
    assert_eq!(
        decode(&insert, PLAIN).unwrap(),
        Message::Insert(Insert {
            xid: None,
            relation: 16385,
            new: TupleData {
                columns: vec![
                    Column::Text(Bytes::from_static(b"42")),
                    Column::Null,
                    Column::UnchangedToast
                ]
            }
        })
    );
    // Inside a stream the same message carries the xid first.
    let streamed = bytes(&[b"I", &99u32.to_be_bytes(), &insert[1..]]);
    let Message::Insert(i) = decode(&streamed, STREAM).unwrap() else {
        panic!()
    };
    assert_eq!(i.xid, Some(99));
}

#[test]
fn update_with_old_key_and_delete_with_full_row() {
    let tuple = |v: &[u8]| {
        [
            &1i16.to_be_bytes()[..],
            b"t",
            &(v.len() as u32).to_be_bytes(),
            v,
        ]
        .concat()
    };
    let update = bytes(&[
        b"U",
        &7u32.to_be_bytes(),
        b"K",
        &tuple(b"1"),
        b"N",
        &tuple(b"2"),
    ]);
    let Message::Update(u) = decode(&update, PLAIN).unwrap() else {
        panic!()
    };
    assert!(matches!(u.old, Some(OldTuple::Key(_))));
    assert_eq!(u.new.columns, vec![Column::Text(Bytes::from_static(b"2"))]);
    let delete = bytes(&[b"D", &7u32.to_be_bytes(), b"O", &tuple(b"1")]);
    let Message::Delete(d) = decode(&delete, PLAIN).unwrap() else {
        panic!()
    };
    assert!(matches!(d.old, OldTuple::Full(_)));
}

#[test]
fn stream_abort_with_and_without_parallel_fields() {
    let short = bytes(&[b"A", &5u32.to_be_bytes(), &6u32.to_be_bytes()]);
    assert_eq!(
        decode(&short, PLAIN).unwrap(),
        Message::StreamAbort(StreamAbort {
            xid: 5,
            subxid: 6,
            abort_lsn: None,
            abort_time: None
        })
    );
    let long = bytes(&[&short[..], &9u64.to_be_bytes(), &3i64.to_be_bytes()]);
    let Message::StreamAbort(a) = decode(&long, PLAIN).unwrap() else {
        panic!()
    };
    assert_eq!((a.abort_lsn, a.abort_time), (Some(Lsn(9)), Some(3)));
}

#[test]
fn malformed_input_is_a_typed_error() {
    assert_eq!(decode(&Bytes::new(), PLAIN), Err(DecodeError::Empty));
    assert_eq!(
        decode(&Bytes::from_static(b"Z"), PLAIN),
        Err(DecodeError::UnknownType(b'Z'))
    );
    assert!(matches!(
        decode(&Bytes::from_static(b"B\0\0"), PLAIN),
        Err(DecodeError::Truncated {
            message: "Begin",
            ..
        })
    ));
    assert!(matches!(
        decode(&Bytes::from_static(b"E!"), PLAIN),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    let no_nul = bytes(&[b"O", &1u64.to_be_bytes(), b"origin"]);
    assert!(matches!(
        decode(&no_nul, PLAIN),
        Err(DecodeError::UnterminatedString { .. })
    ));
    let bad_kind = bytes(&[b"I", &1u32.to_be_bytes(), b"N", &1i16.to_be_bytes(), b"x"]);
    let err = decode(&bad_kind, PLAIN).unwrap_err().to_string();
    assert!(err.contains("column kind 0x78"), "{err}");
    let negative = bytes(&[b"I", &1u32.to_be_bytes(), b"N", &(-1i16).to_be_bytes()]);
    assert!(decode(&negative, PLAIN)
        .unwrap_err()
        .to_string()
        .contains("negative count"));
    // A huge declared length must not allocate or panic.
    let huge = bytes(&[b"T", &u32::MAX.to_be_bytes(), &[0]]);
    assert!(matches!(
        decode(&huge, PLAIN),
        Err(DecodeError::Truncated { .. })
    ));
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ .\u{e9}\u{4e2d}]{0,12}"
}

fn column() -> impl Strategy<Value = Column> {
    prop_oneof![
        Just(Column::Null),
        Just(Column::UnchangedToast),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|v| Column::Text(Bytes::from(v))),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|v| Column::Binary(Bytes::from(v))),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    proptest::collection::vec(column(), 0..8).prop_map(|columns| TupleData { columns })
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

/// Any message, with `xid` present exactly where the context puts one.
fn message(in_stream: bool) -> impl Strategy<Value = Message> {
    let xid = move || any::<u32>().prop_map(move |x| in_stream.then_some(x));
    let prepare = || {
        (
            any::<u8>(),
            lsn(),
            lsn(),
            any::<i64>(),
            any::<u32>(),
            name(),
        )
            .prop_map(|(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| {
                PrepareInfo {
                    flags,
                    prepare_lsn,
                    end_lsn,
                    prepare_time,
                    xid,
                    gid,
                }
            })
    };
    prop_oneof![
        (lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
            Message::Begin(Begin {
                final_lsn,
                commit_time,
                xid,
            })
        }),
        (any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time)| Message::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time
            })
        ),
        (lsn(), name()).prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
        (
            xid(),
            any::<u32>(),
            name(),
            name(),
            any::<u8>(),
            proptest::collection::vec((any::<u8>(), name(), any::<u32>(), any::<i32>()), 0..6)
        )
            .prop_map(|(xid, oid, namespace, name, replica_identity, cols)| {
                Message::Relation(Relation {
                    xid,
                    oid,
                    namespace,
                    name,
                    replica_identity,
                    columns: cols
                        .into_iter()
                        .map(|(flags, name, type_oid, type_modifier)| RelationColumn {
                            flags,
                            name,
                            type_oid,
                            type_modifier,
                        })
                        .collect(),
                })
            }),
        (xid(), any::<u32>(), name(), name()).prop_map(
            |(xid, oid, namespace, name)| Message::Type(TypeMessage {
                xid,
                oid,
                namespace,
                name
            })
        ),
        (xid(), any::<u32>(), tuple()).prop_map(|(xid, relation, new)| Message::Insert(Insert {
            xid,
            relation,
            new
        })),
        (
            xid(),
            any::<u32>(),
            proptest::option::of(old_tuple()),
            tuple()
        )
            .prop_map(|(xid, relation, old, new)| Message::Update(Update {
                xid,
                relation,
                old,
                new
            })),
        (xid(), any::<u32>(), old_tuple())
            .prop_map(|(xid, relation, old)| Message::Delete(Delete { xid, relation, old })),
        (
            xid(),
            any::<u8>(),
            proptest::collection::vec(any::<u32>(), 0..5)
        )
            .prop_map(|(xid, options, relations)| Message::Truncate(Truncate {
                xid,
                options,
                relations
            })),
        (
            xid(),
            any::<bool>(),
            lsn(),
            name(),
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(
                |(xid, transactional, lsn, prefix, content)| Message::Message(LogicalMessage {
                    xid,
                    transactional,
                    lsn,
                    prefix,
                    content: Bytes::from(content)
                })
            ),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| Message::StreamStart(
            StreamStart { xid, first_segment }
        )),
        Just(Message::StreamStop),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| Message::StreamCommit(StreamCommit {
                xid,
                flags,
                commit_lsn,
                end_lsn,
                commit_time
            })
        ),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of((lsn(), any::<i64>()))
        )
            .prop_map(|(xid, subxid, parallel)| Message::StreamAbort(StreamAbort {
                xid,
                subxid,
                abort_lsn: parallel.map(|p| p.0),
                abort_time: parallel.map(|p| p.1),
            })),
        prepare().prop_map(|mut p| {
            p.flags = 0;
            Message::BeginPrepare(p)
        }),
        prepare().prop_map(Message::Prepare),
        prepare().prop_map(Message::StreamPrepare),
        (
            any::<u8>(),
            lsn(),
            lsn(),
            any::<i64>(),
            any::<u32>(),
            name()
        )
            .prop_map(|(flags, commit_lsn, end_lsn, commit_time, xid, gid)| {
                Message::CommitPrepared(CommitPrepared {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid,
                })
            }),
        (
            any::<u8>(),
            lsn(),
            lsn(),
            any::<i64>(),
            any::<i64>(),
            any::<u32>(),
            name()
        )
            .prop_map(
                |(
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid,
                )| Message::RollbackPrepared(RollbackPrepared {
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid
                })
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity((in_stream, msg) in any::<bool>().prop_flat_map(|s| (Just(s), message(s)))) {
        let ctx = DecodeContext { in_stream };
        let mut buf = BytesMut::new();
        encode(&msg, ctx, &mut buf);
        let bytes = buf.freeze();
        prop_assert_eq!(decode(&bytes, ctx), Ok(msg));
        // Every strict prefix is an error or (Stream Abort's optional tail) a valid
        // message, never a panic.
        for cut in 0..bytes.len() {
            let _ = decode(&bytes.slice(..cut), ctx);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), in_stream in any::<bool>()) {
        let _ = decode(&Bytes::from(data), DecodeContext { in_stream });
    }

    #[test]
    fn mutated_messages_never_panic(msg in message(false), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut buf = BytesMut::new();
        encode(&msg, PLAIN, &mut buf);
        let mut data = buf.to_vec();
        for (at, byte) in flips {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] = byte;
            }
        }
        let _ = decode(&Bytes::from(data), PLAIN);
        let _ = decode(&Bytes::from(buf.to_vec()), STREAM);
    }
}
