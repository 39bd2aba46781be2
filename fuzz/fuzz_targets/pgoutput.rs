//! Fuzzes the pgoutput decoder: arbitrary bytes never panic, in either context, and
//! whatever decodes re-encodes to bytes that decode to the same message.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use walcast::source::pgoutput::{decode, encode, DecodeContext};

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    for in_stream in [false, true] {
        let ctx = DecodeContext { in_stream };
        let Ok(message) = decode(&data, ctx) else {
            continue;
        };
        let mut out = BytesMut::new();
        encode(&message, ctx, &mut out);
        let again = decode(&out.freeze(), ctx);
        assert_eq!(
            again.as_ref(),
            Ok(&message),
            "round trip changed the message (in_stream {in_stream})"
        );
    }
});
