//! Fuzzes the token-reading path: `Auth::verify` on arbitrary bytes, with an HMAC secret and an Ed25519 public key
//! configured (a JWKS document would add nothing here: its keys become the same `Key`s). A token that is not
//! well formed, or whose signature does not verify, must be an error; nothing may panic. Ed25519 rather than RSA
//! keeps each run cheap, and a forged signature cannot verify with either key, so every input is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spout::auth::Auth;
use spout::config::{AuthMode, Config};

const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAK9Bbm0Fkr0lAfHbiNkfEOJ4E0vGNR3xgvNaE1hWk2uw=
-----END PUBLIC KEY-----
";

fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = std::env::temp_dir().join(format!("spout-fuzz-ed-{}.pub", std::process::id()));
        std::fs::write(&key, ED_PUBLIC).expect("write the fuzz key");
        let config = Config {
            auth: AuthMode::Jwt,
            jwt_secrets: vec!["fuzz-secret-0123456789".into()],
            jwt_public_keys: vec![key],
            ..Config::default()
        };
        Auth::load(&config).expect("fuzz keys load")
    })
}

fuzz_target!(|data: &[u8]| {
    assert!(auth().verify(data).is_err(), "an unsigned input verified");
});
