//! The token checks through `Auth::verify`: every algorithm a key allows and none other, the refusals (shape,
//! `alg: none`, algorithm confusion, signature, time claims, audience, issuer, claim shapes), rotation and `kid`,
//! garbage and truncations, patterns, JWKS key kinds, and key files that cannot be used.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::keys::{jwk_algorithms, pem_key};
use super::*;

/// An Ed25519 key pair made for these tests (`openssl genpkey -algorithm ed25519`).
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIEplmI6sc5mTa7m8OFwpYvyoSEEZFhndm7rzk/n5ASSv
-----END PRIVATE KEY-----
";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAK9Bbm0Fkr0lAfHbiNkfEOJ4E0vGNR3xgvNaE1hWk2uw=
-----END PUBLIC KEY-----
";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn config() -> Config {
    Config {
        auth: AuthMode::Jwt,
        jwt_secrets: vec!["first-secret-0123456789".into()],
        ..Config::default()
    }
}

fn auth_with(config: &Config) -> Auth {
    Auth::load(config).expect("keys load")
}

fn hs256(secret: &str, claims: &Value) -> String {
    sign(Header::new(Algorithm::HS256), secret.as_bytes(), claims)
}

fn sign(header: Header, secret: &[u8], claims: &Value) -> String {
    encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

fn ed_key(kid: Option<&str>, config: &Config) -> Key {
    let (key, algorithms) = pem_key(ED_PUBLIC).expect("ed public key");
    Key {
        kid: kid.map(Into::into),
        key,
        validation: validation(algorithms, config),
    }
}

fn ed_token(kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(Into::into);
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("ed private key");
    encode(&header, claims, &key).expect("sign")
}

#[test]
fn a_good_token_grants_its_claims() {
    let auth = auth_with(&config());
    let token = hs256(
        "first-secret-0123456789",
        &json!({
            "sub": "user-42",
            "exp": now() + 60,
            "spout": {"subscribe": ["user.42", "room.*"], "publish": ["room.1"], "channels": ["user.42"]},
            "other": "ignored"
        }),
    );
    let grants = auth.verify(token.as_bytes()).expect("valid");
    assert_eq!(grants.client_id.as_deref(), Some("user-42"));
    assert_eq!(grants.expires, Some(now() + 60));
    assert!(grants.subscribe.covers("user.42"));
    assert!(grants.subscribe.covers("room.anything"));
    assert!(!grants.subscribe.covers("user.43"));
    assert!(grants.publish.covers("room.1"));
    assert!(!grants.publish.covers("room.2"));
    assert_eq!(grants.channels, vec![Box::from("user.42")]);
    // Every claim is optional.
    let bare = hs256("first-secret-0123456789", &json!({}));
    assert_eq!(auth.verify(bare.as_bytes()), Ok(Grants::default()));
}

#[test]
fn every_algorithm_of_a_secret_is_accepted_and_none_other() {
    let auth = auth_with(&config());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(Header::new(alg), b"first-secret-0123456789", &json!({}));
        assert!(auth.verify(token.as_bytes()).is_ok(), "{alg:?}");
    }
    // An EdDSA token with only a secret configured: no key accepts it.
    let ed = ed_token(None, &json!({}));
    assert_eq!(auth.verify(ed.as_bytes()), Err(TokenError::Algorithm));
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let config = config();
    let auth = Auth {
        mode: AuthMode::Jwt,
        keys: vec![ed_key(None, &config)],
        public: Patterns::default(),
        hook: None,
    };
    // `alg: none` with an empty signature: no such algorithm.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
    for unsigned in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        assert_eq!(
            auth.verify(unsigned.as_bytes()),
            Err(TokenError::Malformed),
            "{unsigned}"
        );
    }
    // An HMAC token whose "secret" is the public key's PEM: the Ed25519 key accepts only EdDSA.
    let confused = sign(
        Header::new(Algorithm::HS256),
        ED_PUBLIC.as_bytes(),
        &json!({}),
    );
    assert_eq!(auth.verify(confused.as_bytes()), Err(TokenError::Algorithm));
    // The real EdDSA token passes.
    assert!(auth.verify(ed_token(None, &json!({})).as_bytes()).is_ok());
}

#[test]
fn wrong_key_expiry_nbf_audience_and_issuer_are_refused() {
    let mut config = config();
    config.jwt_audience = Some("spout".into());
    config.jwt_issuer = Some("https://app.example".into());
    config.jwt_leeway = Duration::from_secs(30);
    let auth = auth_with(&config);
    let good = json!({"aud": "spout", "iss": "https://app.example"});
    let with = |extra: Value| {
        let mut claims = good.clone();
        for (k, v) in extra.as_object().expect("object") {
            claims[k] = v.clone();
        }
        hs256("first-secret-0123456789", &claims)
    };
    assert!(auth.verify(with(json!({})).as_bytes()).is_ok());
    let cases = [
        (
            hs256("another-secret-0123456789", &good),
            TokenError::Signature,
        ),
        (with(json!({"exp": now() - 60})), TokenError::Expired),
        (with(json!({"nbf": now() + 60})), TokenError::NotYetValid),
        (with(json!({"aud": "other"})), TokenError::Audience),
        (
            hs256(
                "first-secret-0123456789",
                &json!({"iss": "https://app.example"}),
            ),
            TokenError::Audience,
        ),
        (
            with(json!({"iss": "https://evil.example"})),
            TokenError::Issuer,
        ),
        (with(json!({"exp": "tomorrow"})), TokenError::Claims),
        (with(json!({"sub": 42})), TokenError::Claims),
        (
            with(json!({"spout": {"subscribe": "a"}})),
            TokenError::Claims,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(auth.verify(token.as_bytes()), Err(want), "{want:?}");
    }
    // Within the leeway, either side.
    assert!(auth
        .verify(with(json!({"exp": now() - 10})).as_bytes())
        .is_ok());
    assert!(auth
        .verify(with(json!({"nbf": now() + 10})).as_bytes())
        .is_ok());
    // A list audience naming this one.
    assert!(auth
        .verify(with(json!({"aud": ["other", "spout"]})).as_bytes())
        .is_ok());
}

#[test]
fn several_keys_rotate_and_kid_picks_one() {
    let mut config = config();
    config.jwt_secrets.push("second-secret-0123456789".into());
    let mut auth = auth_with(&config);
    for secret in ["first-secret-0123456789", "second-secret-0123456789"] {
        assert!(auth.verify(hs256(secret, &json!({})).as_bytes()).is_ok());
    }
    auth.keys.push(ed_key(Some("ed-1"), &config));
    assert!(auth
        .verify(ed_token(Some("ed-1"), &json!({})).as_bytes())
        .is_ok());
    // A kid no key has: the keys that accept the algorithm are tried.
    assert!(auth
        .verify(ed_token(Some("retired"), &json!({})).as_bytes())
        .is_ok());
    // A kid that names a key picks it alone: an HMAC token claiming the Ed25519 key's kid is not tried on the
    // secrets.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("ed-1".into());
    let token = sign(header, b"first-secret-0123456789", &json!({}));
    assert_eq!(auth.verify(token.as_bytes()), Err(TokenError::Algorithm));
}

#[test]
fn garbage_never_panics_and_is_malformed() {
    let auth = auth_with(&config());
    for bad in [
        &b""[..],
        b".",
        b"..",
        b"a.b.c",
        b"\xff\xfe.\x00.",
        b"eyJhbGciOiJIUzI1NiJ9",
        b"eyJhbGciOiJIUzI1NiJ9..",
        b"eyJhbGciOiJIUzI1NiJ9.e30",
    ] {
        assert!(auth.verify(bad).is_err(), "{bad:?}");
    }
    let good = hs256("first-secret-0123456789", &json!({"sub": "a"}));
    // Every truncation of a good token is refused.
    for end in 0..good.len() {
        assert!(auth.verify(&good.as_bytes()[..end]).is_err(), "{end}");
    }
    // Random bytes and random mutations of a good token (fixed xorshift seed).
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = (next() % 200) as usize;
        let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(auth.verify(&noise).is_err());
        let mut mutated = good.clone().into_bytes();
        let at = (next() as usize) % mutated.len();
        mutated[at] = b"._-AZaz09"[(next() % 9) as usize];
        if mutated != good.as_bytes() {
            // Either refused, or a change base64url decodes to the same bytes (its last character's low bits).
            let _ = auth.verify(&mutated);
        }
    }
}

#[test]
fn patterns_match_exact_names_and_prefixes() {
    let p = Patterns::new(&["user.42", "room.*"]);
    for (channel, covered) in [
        ("user.42", true),
        ("user.420", false),
        ("user.4", false),
        ("room.", true),
        ("room.lobby", true),
        ("room", false),
        ("rooms.x", false),
    ] {
        assert_eq!(p.covers(channel), covered, "{channel}");
    }
    assert!(Patterns::new(&["*"]).covers("anything"));
    assert!(!Patterns::default().covers("anything"));
}

#[test]
fn jwks_keys_take_their_alg_or_their_kind() {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "a"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "b", "alg": "HS384"},
        {"kty": "OKP", "crv": "Ed25519", "x": "K9Bbm0Fkr0lAfHbiNkfEOJ4E0vGNR3xgvNaE1hWk2uw"},
        {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    ]}))
    .expect("jwks");
    let algs: Vec<Vec<Algorithm>> = set
        .keys
        .iter()
        .map(|k| jwk_algorithms(k).expect("supported"))
        .collect();
    assert_eq!(algs[0], HMAC_ALGS);
    assert_eq!(algs[1], [Algorithm::HS384]);
    assert_eq!(algs[2], [Algorithm::EdDSA]);
    assert_eq!(algs[3], [Algorithm::ES256]);
}

const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

#[test]
fn key_files_that_cannot_be_used_name_their_option() {
    let dir = std::env::temp_dir().join(format!("spout-auth-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let private = file("private.pem", ED_PRIVATE);
    let garbage = file("garbage.pem", "not a key");
    let empty = file("empty.txt", "\n\n");
    let secrets = file(
        "secrets.txt",
        "one-secret-0123456789\r\n\nsecond-secret-0123456789\n",
    );
    let cases = [
        (
            Config {
                jwt_public_keys: vec![private],
                ..config()
            },
            "invalid --jwt-public-key (SPOUT_JWT_PUBLIC_KEY): ",
            "is a private key",
        ),
        (
            Config {
                jwt_public_keys: vec![garbage],
                ..config()
            },
            "invalid --jwt-public-key",
            "is not a PEM public key",
        ),
        (
            Config {
                jwt_secret_file: Some(empty),
                ..config()
            },
            "invalid --jwt-secret-file",
            "holds no secret",
        ),
        (
            Config {
                jwt_jwks: Some(dir.join("missing.json")),
                ..config()
            },
            "invalid --jwt-jwks",
            "cannot be read",
        ),
    ];
    for (config, key, reason) in cases {
        let e = Auth::load(&config).err().expect("refused").to_string();
        assert!(e.starts_with(key) && e.contains(reason), "{e}");
    }
    let auth = auth_with(&Config {
        jwt_secret_file: Some(secrets),
        ..config()
    });
    assert_eq!(auth.keys.len(), 3);
    assert!(auth
        .verify(hs256("second-secret-0123456789", &json!({})).as_bytes())
        .is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
