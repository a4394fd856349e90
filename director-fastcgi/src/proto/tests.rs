use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::params::{decode_pairs, encode_pairs};
use super::*;

#[test]
fn begin_request_bytes_match_the_spec() {
    let mut out = BytesMut::new();
    encode_begin_request(1, Role::Responder, FLAG_KEEP_CONN, &mut out);
    assert_eq!(
        &out[..],
        &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0][..]
    );
}

#[test]
fn records_are_padded_to_eight_bytes() {
    let mut out = BytesMut::new();
    encode_record(RecordType::Stdin, 1, b"abc", &mut out);
    assert_eq!(
        &out[..],
        &[1, 5, 0, 1, 0, 3, 5, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0][..]
    );
    assert_eq!(out.len() % 8, 0);
}

#[test]
fn parse_waits_for_whole_record_including_padding() {
    let mut whole = BytesMut::new();
    encode_record(RecordType::Stdout, 7, b"hello", &mut whole);
    for cut in 0..whole.len() {
        let mut part = BytesMut::from(&whole[..cut]);
        assert_eq!(Record::parse(&mut part), Ok(None), "cut at {cut}");
        assert_eq!(part.len(), cut, "incomplete input must stay buffered");
    }
    let rec = Record::parse(&mut whole).unwrap().unwrap();
    assert_eq!(rec, Record::new(RecordType::Stdout, 7, &b"hello"[..]));
    assert!(whole.is_empty());
}

#[test]
fn bad_version_is_an_error() {
    let mut buf = BytesMut::from(&[2u8, 6, 0, 1, 0, 0, 0, 0][..]);
    assert_eq!(Record::parse(&mut buf), Err(ProtocolError::Version(2)));
}

#[test]
fn end_request_round_trip() {
    let mut out = BytesMut::new();
    let end = EndRequest {
        app_status: 0x0102_0304,
        protocol_status: ProtocolStatus::Overloaded,
    };
    encode_end_request(3, end, &mut out);
    let rec = Record::parse(&mut out).unwrap().unwrap();
    assert_eq!(rec.request_id, 3);
    assert_eq!(rec.end_request().unwrap(), end);
    assert!(rec.begin_request().is_err());
}

#[test]
fn long_streams_are_split_at_65535() {
    let data = vec![7u8; MAX_CONTENT_LEN * 2 + 10];
    let mut out = BytesMut::new();
    encode_stream(RecordType::Stdin, 1, &data, &mut out);
    let mut lens = Vec::new();
    while let Some(rec) = Record::parse(&mut out).unwrap() {
        lens.push(rec.content.len());
    }
    assert_eq!(lens, vec![MAX_CONTENT_LEN, MAX_CONTENT_LEN, 10]);
}

#[test]
fn pair_lengths_use_one_or_four_bytes() {
    let short = encode_pairs([("A", "b")]);
    assert_eq!(&short[..], b"\x01\x01Ab");
    let long_value = "v".repeat(128);
    let long = encode_pairs([("N", long_value.as_str())]);
    assert_eq!(&long[..5], &[1, 0x80, 0, 0, 128]);
    let decoded = decode_pairs(&long.freeze()).unwrap();
    assert_eq!(decoded[0].1.len(), 128);
}

#[test]
fn truncated_pairs_are_errors() {
    let mut enc = encode_pairs([("NAME", "value")]);
    enc.truncate(enc.len() - 1);
    assert_eq!(
        decode_pairs(&enc.freeze()),
        Err(ProtocolError::TruncatedPair)
    );
    assert_eq!(
        decode_pairs(&Bytes::from_static(&[0x80, 0])),
        Err(ProtocolError::TruncatedPair)
    );
}

fn record_type() -> impl Strategy<Value = RecordType> {
    any::<u8>().prop_map(RecordType::from_u8)
}

proptest! {
    #[test]
    fn record_round_trip(
        ty in record_type(),
        id in any::<u16>(),
        content in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let rec = Record::new(ty, id, content);
        let mut out = BytesMut::new();
        rec.encode(&mut out);
        prop_assert_eq!(out.len() % 8, 0);
        let parsed = Record::parse(&mut out).unwrap().unwrap();
        prop_assert_eq!(parsed, rec);
        prop_assert!(out.is_empty());
    }

    #[test]
    fn record_type_round_trip(v in any::<u8>()) {
        prop_assert_eq!(RecordType::from_u8(v).as_u8(), v);
        prop_assert_eq!(ProtocolStatus::from_u8(v).as_u8(), v);
    }

    #[test]
    fn role_round_trip(v in any::<u16>()) {
        prop_assert_eq!(Role::from_u16(v).as_u16(), v);
    }

    #[test]
    fn pairs_round_trip(
        pairs in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..300),
             proptest::collection::vec(any::<u8>(), 0..300)),
            0..12,
        )
    ) {
        let enc = encode_pairs(pairs.iter().map(|(n, v)| (n, v))).freeze();
        let dec = decode_pairs(&enc).unwrap();
        let dec: Vec<(Vec<u8>, Vec<u8>)> =
            dec.into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        prop_assert_eq!(dec, pairs);
    }

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Each step either consumes a record, waits for more, or errors; never loops forever.
        while let Ok(Some(rec)) = Record::parse(&mut buf) {
            let _ = rec.begin_request();
            let _ = rec.end_request();
            let _ = decode_pairs(&rec.content);
        }
        let _ = decode_pairs(&Bytes::from(bytes));
    }
}
