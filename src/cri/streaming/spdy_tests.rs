use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn dictionary_is_the_specs() {
    assert_eq!(HEADER_DICTIONARY.len(), 1423);
    assert_eq!(crate::image::digest::sha256(HEADER_DICTIONARY), "sha256:51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02");
}

#[test]
fn frames_round_trip_through_one_compression_context_per_direction() {
    let (mut tx, mut rx) = (Codec::default(), Codec::default());
    let frames = vec![
        Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, flags: 0, headers: vec![("streamtype".into(), "error".into())] },
        Frame::SynStream { stream_id: 3, associated_to: 0, priority: 0, flags: FLAG_FIN, headers: vec![("streamtype".into(), "stdout".into()), ("port".into(), "80".into())] },
        Frame::SynReply { stream_id: 3, flags: 0, headers: vec![] },
        Frame::Data { stream_id: 3, flags: FLAG_FIN, data: b"hello".to_vec() },
        Frame::RstStream { stream_id: 5, status: RST_CANCEL },
        Frame::Settings { flags: 0, entries: vec![(0, 7, 65536)] },
        Frame::Ping { id: 1 },
        Frame::WindowUpdate { stream_id: 1, delta: 1000 },
        Frame::GoAway { last_good_stream_id: 3, status: 0 },
    ];
    let mut wire = Vec::new();
    for f in &frames {
        tx.encode(f, &mut wire).unwrap();
    }
    let mut got = Vec::new();
    let mut at = 0;
    while let Some((f, n)) = rx.decode(&wire[at..]).unwrap() {
        got.push(f);
        at += n;
    }
    assert_eq!(at, wire.len());
    assert_eq!(got, frames);
}

#[test]
fn partial_frames_wait_and_bad_ones_are_refused() {
    let mut c = Codec::default();
    let mut wire = Vec::new();
    c.encode(&Frame::Data { stream_id: 1, flags: 0, data: vec![7; 100] }, &mut wire).unwrap();
    let mut rx = Codec::default();
    assert!(rx.decode(&wire[..50]).unwrap().is_none());
    assert!(rx.decode(&wire[..5]).unwrap().is_none());
    // SPDY/2 control frame
    assert!(matches!(rx.decode(&hex("8002 0006 00000004 00000001")), Err(SpdyError::Version(2))));
    // a length beyond the cap
    assert!(matches!(rx.decode(&hex("00000001 00ffffff")), Err(SpdyError::TooLarge(_))));
    // a header block that is not zlib
    assert!(rx.decode(&hex("8003 0001 0000000e 00000001 00000000 0000 deadbeef")).is_err());
}

#[test]
fn header_blocks_are_length_prefixed_lowercase_pairs() {
    let b = header_block(&vec![("StreamType".into(), "data".into())]);
    assert_eq!(b, hex("00000001 0000000a 73747265616d74797065 00000004 64617461"));
    assert_eq!(parse_header_block(&b).unwrap(), vec![("streamtype".to_string(), "data".to_string())]);
    assert!(parse_header_block(&hex("00000002 00000001 61")).is_err());
}

/// What client-go 1.29's SPDY executor (the code crictl and critest run) sent for an exec with
/// stdin "hello\n", stdout and stderr, captured on the wire: four SYN_STREAMs whose header
/// blocks share one zlib stream, then stdin's data and its FIN.
#[test]
fn client_go_exec_frames_decode() {
    let captured = [
        "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff",
        "800300010000001700000003000000000000c22e555c92929907000000ffff",
        "800300010000001900000005000000000000c22ac5565c92925f5a02000000ffff",
        "800300010000001500000007000000000000c229975a5404000000ffff",
        "000000030000000668656c6c6f0a",
        "0000000301000000",
    ];
    let wire: Vec<u8> = captured.iter().flat_map(|h| hex(h)).collect();
    let mut rx = Codec::default();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((f, n)) = rx.decode(&wire[at..]).unwrap() {
        frames.push(f);
        at += n;
    }
    assert_eq!(at, wire.len());
    let kinds: Vec<(u32, String)> = frames[..4]
        .iter()
        .map(|f| match f {
            Frame::SynStream { stream_id, headers, flags: 0, .. } => (*stream_id, header(headers, "streamtype").unwrap().to_string()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, [(1, "error".into()), (3, "stdin".into()), (5, "stdout".into()), (7, "stderr".into())]);
    assert_eq!(frames[4], Frame::Data { stream_id: 3, flags: 0, data: b"hello\n".to_vec() });
    assert_eq!(frames[5], Frame::Data { stream_id: 3, flags: FLAG_FIN, data: vec![] });
}
