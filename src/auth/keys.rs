//! Loading token keys at startup: `--jwt-secret` and `--jwt-secret-file` (HMAC secrets), `--jwt-public-key` (PEM
//! files) and `--jwt-jwks` (a JWKS document). Each key is fixed to the algorithms of its kind here, once: that
//! is what makes the key, not the token's header, decide the algorithm.
//!
//! Runs before the workers start, so it may read files and fail loudly; every failure names the option at fault
//! and never prints a secret.

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{validation, Key};
use crate::config::{Config, ConfigError};

const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const ES256: &[Algorithm] = &[Algorithm::ES256];
const ES384: &[Algorithm] = &[Algorithm::ES384];
const ED: &[Algorithm] = &[Algorithm::EdDSA];

/// Every key configured, in the order of the options (secrets, secret file, PEM files, JWKS).
pub(super) fn load(config: &Config) -> Result<Vec<Key>, ConfigError> {
    let mut keys = Vec::new();
    let secret = |bytes: &[u8]| Key {
        kid: None,
        key: DecodingKey::from_secret(bytes),
        validation: validation(HMAC, config),
    };
    for s in &config.jwt_secrets {
        keys.push(secret(s.as_bytes()));
    }
    if let Some(path) = &config.jwt_secret_file {
        let flag = "--jwt-secret-file";
        let text = read(flag, path)?;
        let before = keys.len();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            keys.push(secret(line.as_bytes()));
        }
        if keys.len() == before {
            return Err(bad(flag, path, "holds no secret (one per line)".into()));
        }
    }
    for path in &config.jwt_public_keys {
        let flag = "--jwt-public-key";
        let pem = read(flag, path)?;
        let (key, algorithms) = pem_key(&pem).map_err(|reason| bad(flag, path, reason))?;
        keys.push(Key {
            kid: None,
            key,
            validation: validation(algorithms, config),
        });
    }
    if let Some(path) = &config.jwt_jwks {
        let flag = "--jwt-jwks";
        let text = read(flag, path)?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| bad(flag, path, format!("not a JWKS document: {e}")))?;
        let before = keys.len();
        for (index, jwk) in set.keys.iter().enumerate() {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let algorithms = jwk_algorithms(jwk)
                .map_err(|reason| bad(flag, path, format!("keys[{index}]: {reason}")))?;
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| bad(flag, path, format!("keys[{index}]: unusable key: {e}")))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
                validation: validation(&algorithms, config),
            });
        }
        if keys.len() == before {
            return Err(bad(flag, path, "holds no signing key".into()));
        }
    }
    Ok(keys)
}

fn read(flag: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| bad(flag, path, format!("cannot be read: {e}")))
}

fn bad(flag: &str, path: &Path, reason: String) -> ConfigError {
    ConfigError::for_flag(flag, format!("{}: {reason}", path.display()))
}

/// A PEM public key and the algorithms its kind allows.
pub(super) fn pem_key(pem: &str) -> Result<(DecodingKey, &'static [Algorithm]), String> {
    if pem.contains("PRIVATE KEY-----") {
        return Err("is a private key; give spout the public key \
                    (openssl pkey -in private.pem -pubout)"
            .into());
    }
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((key, RSA));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        // The key is the curve point, uncompressed: 1 + 2 × 32 bytes on P-256, 1 + 2 × 48 on P-384.
        return match key.as_bytes().len() {
            65 => Ok((key, ES256)),
            97 => Ok((key, ES384)),
            _ => Err("is an EC key on a curve other than P-256 or P-384".into()),
        };
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok((key, ED));
    }
    Err("is not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into())
}

/// The algorithms a JWK allows: its `alg` when it names one, else every algorithm of its kind and curve.
pub(super) fn jwk_algorithms(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Vec<Algorithm>, String> {
    if let Some(alg) = jwk.common.key_algorithm {
        let alg = Algorithm::from_str(&alg.to_string())
            .map_err(|_| format!("alg {alg} is not a signature algorithm"))?;
        return Ok(vec![alg]);
    }
    let algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::OctetKey(_) => HMAC,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => ES256,
            EllipticCurve::P384 => ES384,
            _ => return Err("an EC key on a curve other than P-256 or P-384".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => ED,
            _ => return Err("an OKP key on a curve other than Ed25519".into()),
        },
    };
    Ok(algorithms.to_vec())
}
