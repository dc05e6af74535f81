//! `proxy::parse` on any bytes: never panics, a complete header never claims more bytes than it was given, and every
//! prefix of a complete header is `Partial` (the answer does not depend on how the header's bytes arrive).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spout::http::Parsed;
use spout::proxy;

fuzz_target!(|data: &[u8]| {
    let whole = proxy::parse(data);
    if let Ok(Parsed::Complete(header, len)) = whole {
        assert!(len <= data.len());
        // What follows the header does not change it.
        assert_eq!(proxy::parse(&data[..len]), Ok(Parsed::Complete(header, len)));
        for end in 0..len {
            assert_eq!(proxy::parse(&data[..end]), Ok(Parsed::Partial), "prefix of {end}");
        }
    }
});
