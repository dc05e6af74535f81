//! Private channels: checking a signed token (JWT) and reading what it grants, or asking the application's auth
//! hook (`hook`, `--auth hook`).
//!
//! Owns the token keys (loaded once at startup by `Auth::load`, see `keys`), the checks a token must pass and the
//! channel patterns of its grants and of `--public-channels`. The cryptography is `jsonwebtoken`'s; nothing here
//! signs, hashes or compares signatures by hand.
//!
//! The checks, in order: the token has the JWT shape and a header naming an algorithm `jsonwebtoken` knows
//! (`alg: none` is no such algorithm); a key accepts that algorithm (the key decides: an HMAC secret accepts only
//! HS256/384/512, an RSA key only RS*/PS*, an EC key ES256/384, an Ed25519 key EdDSA, and a JWKS key its `alg` when
//! it names one, so an HMAC token "signed" with a public key is refused before any check); a key verifies the
//! signature (the key with the token's `kid` if one has it, else each key that accepts the algorithm, for
//! rotation); then `exp` and `nbf` with `--jwt-leeway`, `aud` and `iss` when configured; last, the claims spout
//! reads have the shapes documented (README, "Authorization").
//!
//! Must not: log, echo or keep a token (a `TokenError` says what failed, never what the token held), or touch a
//! connection. A stream keeps only what `Grants` resolves to (its client id and expiry), never the token.

pub mod hook;
mod keys;
pub mod verdict;

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::bus::Bus;
use crate::config::{AuthMode, Config, ConfigError};
use hook::Hook;

/// Who may subscribe and publish, as configured: the mode, the token keys and the public channels.
pub struct Auth {
    pub mode: AuthMode,
    keys: Vec<Key>,
    public: Patterns,
    /// With `--auth hook`, once started (`start_hook`).
    hook: Option<Hook>,
}

/// One key a token may be signed with.
struct Key {
    /// The JWKS `kid`; keys from `--jwt-secret` and `--jwt-public-key` have none.
    kid: Option<String>,
    key: DecodingKey,
    /// What a token checked with this key must satisfy; its `algorithms` are the ones the key accepts.
    validation: Validation,
}

/// Why a token was refused. The messages name the check that failed, never the token's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, or a header or claims that are not the JSON of a JWT.
    Malformed,
    /// The header names an algorithm no configured key accepts (`alg: none`, an HMAC token with only public keys).
    Algorithm,
    /// No key verifies the signature.
    Signature,
    Expired,
    NotYetValid,
    Audience,
    Issuer,
    /// The `sub` or `spout` claim, or a time claim, does not have the documented shape.
    Claims,
}

impl TokenError {
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenError::Malformed => "the token is not a well-formed JWT",
            TokenError::Algorithm => "no configured key accepts the token's algorithm",
            TokenError::Signature => {
                "the token's signature does not verify with any configured key"
            }
            TokenError::Expired => "the token has expired (exp)",
            TokenError::NotYetValid => "the token is not valid yet (nbf)",
            TokenError::Audience => "the token is not for this audience (aud, --jwt-audience)",
            TokenError::Issuer => "the token is not from the expected issuer (iss, --jwt-issuer)",
            TokenError::Claims => {
                "the token's claims do not have the expected shape (sub: string, \
                 spout: {subscribe, publish, channels: lists of strings})"
            }
        }
    }

    fn from_jwt(e: &jsonwebtoken::errors::Error) -> TokenError {
        match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => TokenError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::Algorithm,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::Audience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenError::Issuer,
            // The header was parsed before `decode` ran, so a JSON error is in the claims.
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::Json(_) => TokenError::Claims,
            _ => TokenError::Malformed,
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Channel patterns: exact names, and prefixes written with a trailing `*` (`room.*`; `*` is every channel).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns(Box<[Box<str>]>);

impl Patterns {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Patterns {
        Patterns(patterns.iter().map(|p| p.as_ref().into()).collect())
    }

    /// Whether some pattern covers `channel`.
    pub fn covers(&self, channel: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => **p == *channel,
        })
    }
}

/// What a verified token grants.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// `sub`: the stream's client id (checked by the API against its client-id rule).
    pub client_id: Option<Box<str>>,
    /// `spout.subscribe`.
    pub subscribe: Patterns,
    /// `spout.publish`.
    pub publish: Patterns,
    /// `spout.channels`: channels to subscribe to besides those the request names.
    pub channels: Vec<Box<str>>,
    /// `exp`, in seconds since the Unix epoch (a fraction is dropped).
    pub expires: Option<u64>,
}

/// The claims spout reads; others are ignored. Only the time and audience claims are checked by `jsonwebtoken`.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    /// A NumericDate may have a fraction (RFC 7519 §2).
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    spout: SpoutClaim,
}

#[derive(Default, Deserialize)]
struct SpoutClaim {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
}

impl Auth {
    /// The configured authorization: with `--auth jwt`, reads the key files and builds the keys. Fails naming the
    /// option whose file or value cannot be used.
    pub fn load(config: &Config) -> Result<Auth, ConfigError> {
        let keys = match config.auth {
            AuthMode::None | AuthMode::Hook => Vec::new(),
            AuthMode::Jwt => keys::load(config)?,
        };
        Ok(Auth {
            mode: config.auth,
            keys,
            public: Patterns::new(&config.public_channels),
            hook: None,
        })
    }

    /// No authorization (`--auth none`).
    pub fn none() -> Auth {
        Auth {
            mode: AuthMode::None,
            keys: Vec::new(),
            public: Patterns::default(),
            hook: None,
        }
    }

    /// With `--auth hook`, starts the hook's threads, which answer parked subscribes through `bus`.
    pub fn start_hook(&mut self, config: &Config, bus: Arc<Bus>) -> std::io::Result<()> {
        if let Some(url) = &config.auth_hook {
            self.hook = Some(Hook::start(config, url, bus)?);
        }
        Ok(())
    }

    /// Whether subscribes and publishes are checked against signed tokens (`--auth jwt`).
    pub fn checks_tokens(&self) -> bool {
        self.mode == AuthMode::Jwt
    }

    /// The auth hook, with `--auth hook`.
    pub fn hook(&self) -> Option<&Hook> {
        self.hook.as_ref()
    }

    /// How many keys tokens are checked with (for the startup log).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Whether anyone may subscribe to `channel` without a token (`--public-channels`).
    pub fn is_public(&self, channel: &str) -> bool {
        self.public.covers(channel)
    }

    /// Checks a token (see the module doc for the order of checks) and returns its grants.
    pub fn verify(&self, token: &[u8]) -> Result<Grants, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // A `kid` that names a key picks it alone; without one (or with one no key has), each key that accepts
        // the algorithm is tried: several secrets or PEM keys at once are a rotation.
        let kid = header.kid.as_deref();
        let named = kid.is_some_and(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        let candidates = self.keys.iter().filter(|k| {
            (!named || k.kid.as_deref() == kid) && k.validation.algorithms.contains(&header.alg)
        });
        let mut failure = TokenError::Algorithm;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation) {
                Ok(data) => return Ok(grants(data.claims)),
                Err(e) => {
                    failure = TokenError::from_jwt(&e);
                    if failure != TokenError::Signature {
                        // Not a signature mismatch: a malformed part, or a claim checked after the signature
                        // verified. Another key would answer the same.
                        break;
                    }
                }
            }
        }
        Err(failure)
    }
}

fn grants(claims: Claims) -> Grants {
    Grants {
        client_id: claims.sub.map(Into::into),
        subscribe: Patterns::new(&claims.spout.subscribe),
        publish: Patterns::new(&claims.spout.publish),
        channels: claims.spout.channels.into_iter().map(Into::into).collect(),
        // Saturating: a NumericDate past u64 seconds is "never" for any stream.
        expires: claims.exp.map(|exp| exp.max(0.0) as u64),
    }
}

/// The validation of tokens checked with a key that accepts `algorithms`.
fn validation(algorithms: &[Algorithm], config: &Config) -> Validation {
    let mut v = Validation::new(algorithms.first().copied().unwrap_or_default());
    v.algorithms = algorithms.to_vec();
    // `exp` is checked when present, not required: a token without one is valid until its key is retired.
    v.required_spec_claims.clear();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = config.jwt_leeway.as_secs();
    match &config.jwt_audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.required_spec_claims.insert("aud".to_string());
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &config.jwt_issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".to_string());
    }
    v
}

#[cfg(test)]
mod tests;
