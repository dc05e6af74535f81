//! Private channels (`--auth jwt`) against the real binary: tokens of every supported algorithm (keys made by
//! `openssl`, tokens signed by `jsonwebtoken` here and, independently, by the npm `jose`, checked by spout), every
//! refusal with its exact answer, key rotation by `kid` in a JWKS, the three places a token may come from, channel
//! patterns and public channels, publishing by token (a batch all or nothing), a stream's end at its token's `exp`
//! and the exact resume after it, on SSE and WebSocket; and the real clients: curl with `Authorization`, the npm
//! `eventsource` with `?token=`, the npm `ws` with `?token=`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789abcdef";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    encode(&header, claims, key).expect("sign")
}

/// An HS256 token signed with `SECRET`.
fn token(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// A server with `--auth jwt --jwt-secret SECRET` and `extra`.
fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--auth", "jwt", "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    start_server(&args)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// A subscribe request's answer: an error with its body, or a stream's head (no `Content-Length`: the stream is
/// dropped once the head is read).
fn subscribe_status(addr: std::net::SocketAddr, path: &str, headers: &str) -> Response {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .expect("write");
    read_response(&mut std::io::BufReader::new(stream), false)
}

/// Asserts a `401 invalid_token` with its `WWW-Authenticate` field and a message containing `says`.
fn assert_invalid_token(resp: &Response, says: &str) {
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    let body = resp.json();
    assert_eq!(body["error"], "invalid_token", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

fn assert_forbidden(resp: &Response, channel: &str) {
    assert_eq!(resp.status, 403, "{}", resp.head);
    let body = resp.json();
    assert_eq!(body["error"], "forbidden_channel", "{body}");
    assert_eq!(body["channel"], channel, "{body}");
}

/// Keys made by openssl in a fresh directory under the target dir: `NAME.pem` (private), `NAME.pub` (public).
struct Keys(PathBuf);

impl Keys {
    fn make(test: &str, specs: &[(&str, &[&str])]) -> Option<Keys> {
        if !require_program("openssl") {
            return None;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("auth-{test}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("key dir");
        for (name, genpkey) in specs {
            let private = dir.join(format!("{name}.pem"));
            let public = dir.join(format!("{name}.pub"));
            let status = Command::new("openssl")
                .arg("genpkey")
                .args(*genpkey)
                .arg("-out")
                .arg(&private)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl genpkey");
            assert!(status.success(), "openssl genpkey {genpkey:?}");
            let status = Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&private)
                .arg("-out")
                .arg(&public)
                .status()
                .expect("openssl pkey");
            assert!(status.success(), "openssl pkey -pubout");
        }
        Some(Keys(dir))
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }

    fn private(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.0.join(format!("{name}.pem"))).expect("private key")
    }
}

const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"];
const ED25519: &[&str] = &["-algorithm", "ed25519"];

#[test]
fn every_algorithm_is_accepted_with_its_key_and_every_bad_token_is_a_clear_401() {
    let Some(keys) = Keys::make(
        "algorithms",
        &[
            ("rsa", RSA),
            ("p256", P256),
            ("p384", P384),
            ("ed", ED25519),
        ],
    ) else {
        return;
    };
    let public = format!(
        "{},{},{},{}",
        keys.path("rsa.pub"),
        keys.path("p256.pub"),
        keys.path("p384.pub"),
        keys.path("ed.pub")
    );
    let server = start(&["--jwt-public-key", &public]);
    let claims = json!({"exp": now() + 300, "spout": {"subscribe": ["room.*"]}});
    let hmac = EncodingKey::from_secret(SECRET.as_bytes());
    let rsa = EncodingKey::from_rsa_pem(&keys.private("rsa")).expect("rsa key");
    let p256 = EncodingKey::from_ec_pem(&keys.private("p256")).expect("p256 key");
    let p384 = EncodingKey::from_ec_pem(&keys.private("p384")).expect("p384 key");
    let ed = EncodingKey::from_ed_pem(&keys.private("ed")).expect("ed key");
    let signed: [(Algorithm, &EncodingKey); 12] = [
        (Algorithm::HS256, &hmac),
        (Algorithm::HS384, &hmac),
        (Algorithm::HS512, &hmac),
        (Algorithm::RS256, &rsa),
        (Algorithm::RS384, &rsa),
        (Algorithm::RS512, &rsa),
        (Algorithm::PS256, &rsa),
        (Algorithm::PS384, &rsa),
        (Algorithm::PS512, &rsa),
        (Algorithm::ES256, &p256),
        (Algorithm::ES384, &p384),
        (Algorithm::EdDSA, &ed),
    ];
    for (alg, key) in signed {
        let t = sign(alg, None, key, &claims);
        let resp = subscribe_status(server.addr, "/sub/room.1", &bearer(&t));
        assert_eq!(resp.status, 200, "{alg:?}: {}", resp.head);
    }

    // The refusals: each a 401 naming what failed, none echoing the token.
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims.to_string())
    );
    let rsa_public = std::fs::read(keys.path("rsa.pub")).expect("rsa.pub");
    let confused = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&rsa_public),
        &claims,
    );
    // Only a secret and these public keys are configured: an HS256 token "signed" with the RSA public key is
    // checked against the secret alone, and fails there.
    let wrong_secret = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"another-secret"),
        &claims,
    );
    let other_rsa = Keys::make("algorithms-other", &[("rsa", RSA)]).expect("openssl");
    let wrong_key = sign(
        Algorithm::RS256,
        None,
        &EncodingKey::from_rsa_pem(&other_rsa.private("rsa")).expect("key"),
        &claims,
    );
    let good = token(&claims);
    // Cut at its last dot: two parts, not a JWT. (A signature cut short by a few characters is refused as
    // malformed or as not verifying, depending on whether what is left is still base64url.)
    let truncated = good.rsplit_once('.').expect("three parts").0;
    let cases: [(String, &str); 8] = [
        (unsigned, "not a well-formed JWT"),
        (confused, "signature does not verify"),
        (wrong_secret, "signature does not verify"),
        (wrong_key, "signature does not verify"),
        (truncated.to_string(), "not a well-formed JWT"),
        ("garbage".to_string(), "not a well-formed JWT"),
        (
            token(&json!({"exp": now() - 120, "spout": {"subscribe": ["*"]}})),
            "expired",
        ),
        (
            token(&json!({"nbf": now() + 120, "spout": {"subscribe": ["*"]}})),
            "not valid yet",
        ),
    ];
    for (bad, says) in &cases {
        let resp = subscribe_status(server.addr, "/sub/room.1", &bearer(bad));
        assert_invalid_token(&resp, says);
        assert!(!resp.text().contains(bad.as_str()), "the token is echoed");
    }
    // A token past --max-head is refused as any oversized head is.
    let huge = "a".repeat(9000);
    assert_eq!(
        subscribe_status(server.addr, "/sub/room.1", &bearer(&huge)).status,
        431
    );
    // The server is still well, and counted the refusals (in its next metrics snapshot).
    assert_eq!(get(server.addr, "/healthz").status, 200);
    wait_for("the refusals counted", || {
        metric(server.addr, "spout_auth_refused_total") == cases.len() as u64
    });
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let server = start(&["--jwt-audience", "spout", "--jwt-issuer", "https://app"]);
    let grant = json!({"subscribe": ["*"]});
    let ok = token(&json!({"aud": "spout", "iss": "https://app", "spout": grant}));
    assert_eq!(
        subscribe_status(server.addr, "/sub/a", &bearer(&ok)).status,
        200
    );
    for (claims, says) in [
        (
            json!({"aud": "other", "iss": "https://app", "spout": grant}),
            "audience",
        ),
        (json!({"iss": "https://app", "spout": grant}), "audience"),
        (
            json!({"aud": "spout", "iss": "https://evil", "spout": grant}),
            "issuer",
        ),
    ] {
        let resp = subscribe_status(server.addr, "/sub/a", &bearer(&token(&claims)));
        assert_invalid_token(&resp, says);
    }
}

#[test]
fn jwks_keys_are_picked_by_kid_and_several_secrets_rotate() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("auth-jwks");
    std::fs::create_dir_all(&dir).expect("dir");
    let jwks = dir.join("keys.json");
    use base64::Engine as _;
    let k = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    std::fs::write(
        &jwks,
        json!({"keys": [
            {"kty": "oct", "kid": "2026-01", "k": k("january-secret-0123456789"), "alg": "HS256"},
            {"kty": "oct", "kid": "2026-02", "k": k("february-secret-0123456789"), "alg": "HS256"},
            {"kty": "oct", "kid": "enc", "use": "enc", "k": k("not-for-signing-0123456789")}
        ]})
        .to_string(),
    )
    .expect("write jwks");
    let server = start_server(&[
        "--auth",
        "jwt",
        "--jwt-jwks",
        jwks.to_str().expect("path"),
        "--jwt-secret",
        "old-secret-0123456789",
        "--jwt-secret",
        "new-secret-0123456789",
    ]);
    let claims = json!({"spout": {"subscribe": ["*"]}});
    let with = |kid: Option<&str>, secret: &str| {
        let key = EncodingKey::from_secret(secret.as_bytes());
        let t = sign(Algorithm::HS256, kid, &key, &claims);
        subscribe_status(server.addr, "/sub/a", &bearer(&t))
    };
    assert_eq!(
        with(Some("2026-01"), "january-secret-0123456789").status,
        200
    );
    assert_eq!(
        with(Some("2026-02"), "february-secret-0123456789").status,
        200
    );
    // The kid picks the key: January's kid with February's secret does not verify.
    assert_invalid_token(
        &with(Some("2026-01"), "february-secret-0123456789"),
        "signature",
    );
    // An encryption key is never used for signatures.
    assert_invalid_token(
        &with(Some("enc"), "not-for-signing-0123456789"),
        "signature",
    );
    // Without a kid, each key that takes the algorithm is tried: both secrets of a rotation.
    assert_eq!(with(None, "old-secret-0123456789").status, 200);
    assert_eq!(with(None, "new-secret-0123456789").status, 200);
    assert_invalid_token(&with(None, "retired-secret-0123456789"), "signature");
}

#[test]
fn patterns_public_channels_token_channels_and_the_client_id() {
    let server = start(&["--public-channels", "news,pub.*"]);
    // Without a token: public channels only.
    for path in ["/sub/news", "/sub/pub.anything", "/sub/news,pub.x"] {
        assert_eq!(
            subscribe_status(server.addr, path, "").status,
            200,
            "{path}"
        );
    }
    for path in ["/sub/private", "/sub/news,private", "/sub/newsroom"] {
        assert_invalid_token(&subscribe_status(server.addr, path, ""), "needs a token");
    }
    let user = token(&json!({
        "sub": "user-42",
        "spout": {"subscribe": ["user.42", "room.*"], "channels": ["user.42"]}
    }));
    assert_forbidden(
        &subscribe_status(server.addr, "/sub/room.1,user.43", &bearer(&user)),
        "user.43",
    );
    assert_forbidden(
        &subscribe_status(server.addr, "/sub/user.420", &bearer(&user)),
        "user.420",
    );
    // A bad token is refused even for a public channel.
    assert_invalid_token(
        &subscribe_status(server.addr, "/sub/news", &bearer("x.y.z")),
        "not a well-formed JWT",
    );
    // A client id is the token's sub: asking for another is refused, repeating it is fine.
    let resp = subscribe_status(server.addr, "/sub/room.1?client_id=admin", &bearer(&user));
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"], "forbidden_client_id");
    let resp = subscribe_status(server.addr, "/sub/news?client_id=me", "");
    assert_eq!(resp.status, 403);
    assert_eq!(
        subscribe_status(server.addr, "/sub/room.1?client_id=user-42", &bearer(&user)).status,
        200
    );
    // A sub that is not a client id is a bad token.
    let odd = token(&json!({"sub": "a b", "spout": {"subscribe": ["*"]}}));
    assert_invalid_token(
        &subscribe_status(server.addr, "/sub/news", &bearer(&odd)),
        "sub is not a client id",
    );

    // `/sub/` with the token's spout.channels, plus a path channel: both subscribed; `?to=` by sub reaches it.
    let mut stream = sse_subscribe(server.addr, "/sub/", &bearer(&user));
    assert_eq!(stream.response.header("spout-client-id"), Some("user-42"));
    let mut room = sse_subscribe(server.addr, "/sub/room.7", &bearer(&user));
    let publisher = token(&json!({"spout": {"publish": ["user.*", "room.*"]}}));
    let post = |path: &str, body: &str| {
        request(
            server.addr,
            "POST",
            path,
            &bearer(&publisher),
            body.as_bytes(),
        )
    };
    assert_eq!(post("/pub/user.42?to=user-42", "for you").status, 200);
    assert_eq!(post("/pub/user.42?to=user-43", "not for you").status, 200);
    assert_eq!(post("/pub/room.7", "room").status, 200);
    assert_eq!(post("/pub/user.42", "after").status, 200);
    let data = |s: &mut Sse, n| s.events(n).into_iter().map(|e| e.data).collect::<Vec<_>>();
    assert_eq!(data(&mut stream, 2), ["for you", "after"]);
    // The token's channels come with every stream it opens, beside the path's.
    assert_eq!(data(&mut room, 3), ["for you", "room", "after"]);
    // The token's channels are granted by being listed, without a subscribe pattern.
    let listed = token(&json!({"spout": {"channels": ["inbox.7"]}}));
    assert_eq!(
        subscribe_status(server.addr, "/sub/", &bearer(&listed)).status,
        200
    );
    assert_forbidden(
        &subscribe_status(server.addr, "/sub/inbox.8", &bearer(&listed)),
        "inbox.8",
    );
    // `/sub/` with a token that lists no channel names none.
    let bare = token(&json!({"spout": {"subscribe": ["*"]}}));
    let resp = subscribe_status(server.addr, "/sub/", &bearer(&bare));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"], "invalid_channel");
}

#[test]
fn the_token_comes_from_the_header_the_query_or_the_cookie_first_found_wins() {
    let server = start(&["--jwt-cookie", "session_jwt"]);
    let good = token(&json!({"spout": {"subscribe": ["a"]}}));
    let ok = |path: &str, headers: &str| subscribe_status(server.addr, path, headers).status;
    assert_eq!(ok("/sub/a", &bearer(&good)), 200);
    assert_eq!(ok(&format!("/sub/a?token={good}"), ""), 200);
    assert_eq!(
        ok(
            "/sub/a",
            &format!("Cookie: theme=dark; session_jwt={good}\r\n")
        ),
        200
    );
    // The default cookie name is not read when another is configured.
    assert_eq!(
        ok("/sub/a", &format!("Cookie: spout_token={good}\r\n")),
        401
    );
    // First found wins: a bad header is not rescued by a good query token, nor a bad query by a good cookie.
    assert_eq!(ok(&format!("/sub/a?token={good}"), &bearer("bad")), 401);
    assert_eq!(
        ok(
            "/sub/a?token=bad",
            &format!("Cookie: session_jwt={good}\r\n")
        ),
        401
    );
    // WebSocket: the same three.
    for (path, headers) in [
        ("/sub/a".to_string(), bearer(&good)),
        (format!("/sub/a?token={good}"), String::new()),
        (
            "/sub/a".to_string(),
            format!("Cookie: session_jwt={good}\r\n"),
        ),
    ] {
        let (_ws, id) = ws_connect(server.addr, &path, &headers);
        assert!(!id.is_empty());
    }
    let (_socket, head) = ws_upgrade(server.addr, "/sub/a?token=bad", "");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(
        head.contains("WWW-Authenticate: Bearer error=\"invalid_token\""),
        "{head}"
    );
}

#[test]
fn publishing_takes_the_publish_key_or_a_token_covering_every_channel() {
    let key = "publish-key-0123456789abcdef";
    let server = start(&["--publish-key", key]);
    let reader = token(&json!({"spout": {"subscribe": ["*"]}}));
    let mut a = sse_subscribe(server.addr, "/sub/room.a,room.b,news", &bearer(&reader));
    let writer = token(&json!({"spout": {"publish": ["room.*"]}}));
    let post = |path: &str, auth: &str, body: &str| {
        request(server.addr, "POST", path, &bearer(auth), body.as_bytes())
    };
    assert_eq!(post("/pub/room.a", &writer, "1").status, 200);
    assert_forbidden(&post("/pub/news", &writer, "no"), "news");
    // A batch is authorized whole: one channel outside the grant refuses all of it.
    let batch = json!({"events": [
        {"channel": "room.b", "data": "not sent"},
        {"channel": "news", "data": "not sent"}
    ]});
    assert_forbidden(&post("/pub", &writer, &batch.to_string()), "news");
    let batch = json!({"events": [
        {"channel": "room.b", "data": "2"},
        {"channel": "room.a", "data": "3"}
    ]});
    assert_eq!(post("/pub", &writer, &batch.to_string()).status, 200);
    // The publish key may publish anywhere.
    assert_eq!(post("/pub/news", key, "4").status, 200);
    let data: Vec<String> = a.events(4).into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["1", "2", "3", "4"]);
    // No credential, a subscriber's token, a bad one.
    let resp = request(server.addr, "POST", "/pub/room.a", "", b"x");
    assert_invalid_token(&resp, "publishing needs");
    assert_forbidden(&post("/pub/room.a", &reader, "x"), "room.a");
    assert_invalid_token(
        &post("/pub/room.a", "nonsense", "x"),
        "not a well-formed JWT",
    );
    // Channel admin takes the publish key only.
    let admin = |auth: &str| request(server.addr, "GET", "/channels", &bearer(auth), b"").status;
    assert_eq!(admin(key), 200);
    assert_eq!(admin(&writer), 401);
}

#[test]
fn channel_admin_needs_a_publish_key_under_jwt() {
    let server = start(&[]);
    let resp = get(server.addr, "/channels");
    assert_eq!(resp.status, 401);
    assert!(resp.json()["message"]
        .as_str()
        .expect("message")
        .contains("--publish-key"));
}

/// A token whose `exp` is 1 to 2 seconds away, and when spout stops accepting it with `--jwt-leeway 0s`: at the
/// start of the second after `exp` (the check compares whole seconds).
fn short_token(channels: &[&str]) -> (String, Instant) {
    let exp = now() + 1;
    let refused_from = Duration::from_secs(exp + 1);
    let at = Instant::now()
        + refused_from.saturating_sub(std::time::UNIX_EPOCH.elapsed().expect("clock"));
    (
        token(&json!({"exp": exp, "sub": "u1", "spout": {"subscribe": channels}})),
        at,
    )
}

#[test]
fn a_stream_ends_at_exp_with_expired_and_resumes_exactly_with_a_fresh_token() {
    let server = start(&["--heartbeat", "200ms", "--jwt-leeway", "0s"]);
    let publisher = token(&json!({"spout": {"publish": ["*"]}}));
    let post = |data: &str| {
        let resp = request(
            server.addr,
            "POST",
            "/pub/t",
            &bearer(&publisher),
            data.as_bytes(),
        );
        assert_eq!(resp.status, 200);
        resp.json()["id"].as_str().expect("id").to_string()
    };
    let (short, expires_at) = short_token(&["t"]);
    let mut sse = sse_subscribe(server.addr, "/sub/t", &bearer(&short));
    let first = post("one");
    let got = sse.next_event().expect("event");
    assert_eq!(
        (got.id.as_deref(), got.data.as_str()),
        (Some(first.as_str()), "one")
    );
    // Heartbeats go on until the expiry; then the last event, with no id, and the end of the stream.
    let tail = sse.read_until(b"event: expired\n");
    assert!(
        String::from_utf8_lossy(&tail).contains(":\n\n"),
        "heartbeats before the expiry"
    );
    let late = Instant::now().saturating_duration_since(expires_at);
    assert!(
        Instant::now() + Duration::from_millis(50) >= expires_at && late < Duration::from_secs(1),
        "ended {late:?} after exp"
    );
    let rest = sse.read_until(b"\n\n");
    assert_eq!(rest, b"data: {\"reason\":\"token_expired\"}\n\n");
    assert!(sse.next_event().is_none(), "the stream ends after expired");
    wait_for("the expiry counted", || {
        metric(server.addr, "spout_token_expired_streams_total") == 1
    });

    // Events published while the client fetched a fresh token arrive on resume, exactly.
    let missed = [post("two"), post("three")];
    let fresh = token(&json!({"exp": now() + 300, "sub": "u1", "spout": {"subscribe": ["t"]}}));
    let mut again = sse_subscribe(
        server.addr,
        "/sub/t",
        &format!("{}Last-Event-ID: {first}\r\n", bearer(&fresh)),
    );
    let replayed = again.events(2);
    let ids: Vec<&str> = replayed.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, [missed[0].as_str(), missed[1].as_str()]);
    assert_eq!(replayed[1].data, "three");
}

#[test]
fn a_websocket_stream_closes_with_4001_at_exp() {
    let server = start(&["--jwt-leeway", "0s"]);
    let (short, _) = short_token(&["w"]);
    let (mut ws, id) = ws_connect(server.addr, "/sub/w", &bearer(&short));
    assert_eq!(id, "u1");
    let expired = ws.next_json();
    assert_eq!(
        expired,
        json!({"event": "expired", "reason": "token_expired"})
    );
    let close = ws.read_frame();
    assert_eq!(close.close_code(), Some(4001));
    assert!(ws.read_to_end().is_empty());
}

#[test]
fn curl_subscribes_with_an_authorization_header() {
    if !require_program("curl") {
        return;
    }
    let server = start(&[]);
    let t = token(&json!({"spout": {"subscribe": ["news"], "publish": ["news"]}}));
    let url = server.url("/sub/news");
    // Refused: curl sees the 401 and its body.
    let refused = Command::new("curl")
        .args(["-s", "-i", "--max-time", "5", &url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(text.contains(r#"{"error":"invalid_token""#), "{text}");
    // Allowed: the stream, then an event.
    let mut curl = Command::new("curl")
        .args(["-s", "-N", "--max-time", "10", "-H"])
        .arg(format!("Authorization: Bearer {t}"))
        .arg(&url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    wait_for("curl's subscription", || {
        subscribers_by_publish(&server, &t) > 0
    });
    let mut out = curl.stdout.take().expect("stdout");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("data: hello\n\n") {
        assert!(
            Instant::now() < deadline,
            "curl printed {:?}",
            String::from_utf8_lossy(&got)
        );
        let n = out.read(&mut buf).expect("read curl");
        assert!(n > 0, "curl ended: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let _ = curl.kill();
    let _ = curl.wait();
}

/// Publishes `hello` to `news` with `token` once a subscriber is there; returns how many got it.
fn subscribers_by_publish(server: &Server, token: &str) -> u64 {
    let resp = request(server.addr, "POST", "/pub/news", &bearer(token), b"hello");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["subscribers"].as_u64().expect("subscribers")
}

#[test]
fn eventsource_with_a_query_token_gets_expired_and_is_refused_after() {
    if !require_node_package("eventsource") {
        return;
    }
    let server = start(&["--retry", "200ms", "--jwt-leeway", "0s"]);
    let (short, _) = short_token(&["es"]);
    let client = NodeScript::start(
        "eventsource_client.mjs",
        &[&server.url(&format!("/sub/es?token={short}")), "expired"],
    );
    assert_eq!(client.next(), json!({"state": "open"}));
    let publisher = token(&json!({"spout": {"publish": ["es"]}}));
    let resp = request(server.addr, "POST", "/pub/es", &bearer(&publisher), b"hi");
    let id = resp.json()["id"].as_str().expect("id").to_string();
    assert_eq!(
        client.next(),
        json!({"id": id, "event": "message", "data": "hi"})
    );
    // `expired` carries no id (this client shows none on the event): the id to resume from stays the last event's.
    assert_eq!(
        client.next(),
        json!({"id": "", "event": "expired", "data": "{\"reason\":\"token_expired\"}"})
    );
    // The stream ends; the reconnect with the same (expired) token is refused, and a 401 ends an EventSource for
    // good: no `open` after it.
    assert_eq!(client.next(), json!({"state": "error"}));
    assert_eq!(client.next(), json!({"state": "error"}));
    let after = client.lines.recv_timeout(Duration::from_secs(1));
    assert!(after.is_err(), "after the refusal: {after:?}");
}

#[test]
fn a_ws_client_with_a_query_token_gets_its_events_and_4001() {
    if !require_node_package("ws") {
        return;
    }
    let server = start(&["--jwt-leeway", "0s"]);
    let (short, _) = short_token(&["wsq"]);
    let url = format!("ws://{}/sub/wsq?token={short}", server.addr);
    let client = NodeScript::start("ws_client.mjs", &[&url]);
    assert_eq!(client.next(), json!({"state": "open"}));
    assert_eq!(client.next()["message"]["event"], "open");
    let publisher = token(&json!({"spout": {"publish": ["wsq"]}}));
    let resp = request(server.addr, "POST", "/pub/wsq", &bearer(&publisher), b"hi");
    assert_eq!(resp.status, 200);
    assert_eq!(client.next()["message"]["data"], "hi");
    assert_eq!(
        client.next(),
        json!({"message": {"event": "expired", "reason": "token_expired"}})
    );
    assert_eq!(client.next(), json!({"state": "close", "code": 4001}));
}

#[test]
fn unusable_keys_stop_the_start_naming_their_option() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("auth-start");
    std::fs::create_dir_all(&dir).expect("dir");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a key").expect("write");
    let junk = junk.to_str().expect("path");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--auth", "jwt"],
            "invalid --auth (SPOUT_AUTH): jwt needs a key",
        ),
        (
            &["--auth", "jwt", "--jwt-public-key", junk],
            "invalid --jwt-public-key (SPOUT_JWT_PUBLIC_KEY): ",
        ),
        (&["--jwt-secret", "s"], "but --auth is none"),
    ];
    for (args, says) in cases {
        let (code, stderr) = start_failure(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A token minted by `loadtest/mint_token.mjs`: Node's own crypto, an implementation independent of the crate spout
/// checks tokens with.
fn node_token(alg: &str, key: &str, claims: &Value) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/mint_token.mjs");
    let out = Command::new("node")
        .args([script, alg, key, &claims.to_string()])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "mint_token.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn tokens_minted_by_node_crypto_are_accepted_and_checked() {
    if !require_program("node") {
        return;
    }
    let Some(keys) = Keys::make("node", &[("rsa", RSA), ("p256", P256)]) else {
        return;
    };
    let secret = keys.path("secret");
    std::fs::write(&secret, SECRET).expect("secret file");
    let server = start(&[
        "--jwt-public-key",
        &format!("{},{}", keys.path("rsa.pub"), keys.path("p256.pub")),
    ]);
    let claims = json!({"sub": "node-1", "exp": now() + 300, "spout": {"subscribe": ["n.*"]}});
    for (alg, key) in [
        ("HS256", secret.as_str()),
        ("RS256", &keys.path("rsa.pem")),
        ("ES256", &keys.path("p256.pem")),
    ] {
        let t = node_token(alg, key, &claims);
        let resp = subscribe_status(server.addr, "/sub/n.1", &bearer(&t));
        assert_eq!(resp.status, 200, "{alg}: {}", resp.head);
        assert_eq!(resp.header("spout-client-id"), Some("node-1"), "{alg}");
        assert_forbidden(
            &subscribe_status(server.addr, "/sub/other", &bearer(&t)),
            "other",
        );
        // One byte of the signature changed: refused.
        let mut forged = t.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(
            subscribe_status(server.addr, "/sub/n.1", &bearer(&forged)).status,
            401,
            "{alg}"
        );
    }
    let expired = node_token(
        "ES256",
        &keys.path("p256.pem"),
        &json!({"exp": now() - 120, "spout": {"subscribe": ["*"]}}),
    );
    assert_invalid_token(
        &subscribe_status(server.addr, "/sub/n.1", &bearer(&expired)),
        "expired",
    );
}

#[test]
fn chromium_sends_the_cookie_across_origins_and_a_websocket_the_query_token() {
    if !require_browser() {
        return;
    }
    // The page's origin must be listed exactly for credentials: pick its port first.
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let origin = format!("http://127.0.0.1:{page_port}");
    let server = start(&["--cors-origin", &origin]);
    let user =
        token(&json!({"sub": "user-42", "exp": now() + 300, "spout": {"subscribe": ["user.42"]}}));
    let files = BrowserFiles::new("auth-chromium-profile", "auth-browser.png");
    let mut page = NodeScript::start(
        "auth_browser.mjs",
        &[
            &server.url(""),
            &user,
            &user,
            files.profile_arg(),
            &page_port.to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let ready = [
        json!({"stream": "cookie", "state": "open"}),
        json!({"stream": "query", "state": "hello"}),
        json!({"stream": "denied", "state": "error"}),
    ];
    while !ready.iter().all(|r| seen.contains(r)) {
        seen.push(page.next_by(deadline, "the page's streams to open"));
    }
    assert!(
        !seen.contains(&json!({"stream": "denied", "state": "open"})),
        "{seen:?}"
    );
    let publisher = token(&json!({"spout": {"publish": ["user.*"]}}));
    for channel in ["user.43", "user.42"] {
        let resp = request(
            server.addr,
            "POST",
            &format!("/pub/{channel}"),
            &bearer(&publisher),
            channel.as_bytes(),
        );
        assert_eq!(resp.status, 200);
    }
    let mut events = vec![
        page.next_by(deadline, "the event"),
        page.next_by(deadline, "the event"),
    ];
    events.sort_by_key(|e| e.to_string());
    assert_eq!(
        events,
        [
            json!({"stream": "cookie", "data": "user.42"}),
            json!({"stream": "query", "data": "user.42"})
        ]
    );
    page.close_stdin();
    page.assert_exits_ok(Instant::now() + WAIT);
}

/// Runs `tests/js/jose_mint.mjs` on `job`: the tokens it asks for, in order, and the JWKS of its `jwks` keys.
fn jose(job: &Value) -> (Vec<String>, Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/jose_mint.mjs");
    let out = Command::new("node")
        .args([script, &job.to_string()])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "jose_mint.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted: Value = serde_json::from_slice(&out.stdout).expect("jose_mint.mjs JSON");
    let tokens = minted["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_str().expect("token").to_string())
        .collect();
    (tokens, minted["jwks"].clone())
}

/// Tokens minted by `jose` (npm), not by the `jsonwebtoken` crate spout verifies with: every algorithm spout
/// accepts, every refusal, and keys picked by `kid` from a JWKS that `jose` exported.
#[test]
fn tokens_minted_by_jose_are_accepted_and_refused_as_documented() {
    if !require_program("node") || !require_node_package("jose") {
        return;
    }
    let Some(keys) = Keys::make(
        "jose",
        &[
            ("rsa", RSA),
            ("rsa2", RSA),
            ("p256", P256),
            ("p384", P384),
            ("ed", ED25519),
        ],
    ) else {
        return;
    };
    let (aud, iss) = ("spout-test", "the-app");
    let server = start(&[
        "--jwt-public-key",
        &[
            keys.path("rsa.pub"),
            keys.path("p256.pub"),
            keys.path("p384.pub"),
            keys.path("ed.pub"),
        ]
        .join(","),
        "--jwt-audience",
        aud,
        "--jwt-issuer",
        iss,
    ]);
    let good =
        json!({"aud": aud, "iss": iss, "exp": now() + 300, "spout": {"subscribe": ["room.*"]}});
    let with = |change: Value| {
        let mut claims = good.clone();
        for (k, v) in change.as_object().expect("object") {
            claims[k] = v.clone();
        }
        claims
    };
    let pem = |name: &str| keys.path(&format!("{name}.pem"));
    let mut specs = Vec::new();
    for alg in ["HS256", "HS384", "HS512"] {
        specs.push(json!({"alg": alg, "secret": SECRET, "claims": good}));
    }
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        specs.push(json!({"alg": alg, "pem": pem("rsa"), "claims": good}));
    }
    specs.push(json!({"alg": "ES256", "pem": pem("p256"), "claims": good}));
    specs.push(json!({"alg": "ES384", "pem": pem("p384"), "claims": good}));
    specs.push(json!({"alg": "EdDSA", "pem": pem("ed"), "claims": good}));
    let accepted = specs.len();
    let refusals: [(Value, &str); 11] = [
        (
            json!({"alg": "HS256", "secret": "another-secret-0123456789abcdef", "claims": good}),
            "signature does not verify",
        ),
        (
            json!({"alg": "RS256", "pem": pem("rsa2"), "claims": good}),
            "signature does not verify",
        ),
        (
            json!({"alg": "none", "claims": good}),
            "not a well-formed JWT",
        ),
        (
            json!({"alg": "HS256", "secret": SECRET, "claims": with(json!({"exp": now() - 120}))}),
            "expired",
        ),
        (
            json!({"alg": "ES256", "pem": pem("p256"), "claims": with(json!({"nbf": now() + 120}))}),
            "not valid yet",
        ),
        (
            json!({"alg": "EdDSA", "pem": pem("ed"), "claims": with(json!({"aud": "another-app"}))}),
            "audience",
        ),
        (
            json!({"alg": "RS256", "pem": pem("rsa"), "claims": with(json!({"iss": "someone-else"}))}),
            "issuer",
        ),
        (
            json!({"alg": "HS256", "secret": SECRET, "claims": {"iss": iss, "exp": now() + 300}}),
            "audience",
        ),
        // HMAC "signed" with the RSA public key (algorithm confusion): checked against the secret only.
        (
            json!({"alg": "HS256", "bytes": keys.path("rsa.pub"), "claims": good}),
            "signature does not verify",
        ),
        (
            json!({"alg": "HS384", "bytes": keys.path("p256.pub"), "claims": good}),
            "signature does not verify",
        ),
        (
            json!({"alg": "PS256", "pem": pem("rsa2"), "claims": good}),
            "signature does not verify",
        ),
    ];
    specs.extend(refusals.iter().map(|(spec, _)| spec.clone()));
    let (tokens, _) = jose(&json!({ "tokens": specs }));
    for (spec, token) in specs.iter().zip(&tokens).take(accepted) {
        let resp = subscribe_status(server.addr, "/sub/room.1", &bearer(token));
        assert_eq!(resp.status, 200, "{}: {}", spec["alg"], resp.text());
    }
    for ((spec, says), token) in refusals.iter().zip(&tokens[accepted..]) {
        let resp = subscribe_status(server.addr, "/sub/room.1", &bearer(token));
        assert_eq!(resp.status, 401, "{spec}");
        assert_invalid_token(&resp, says);
        assert!(!resp.text().contains(token.as_str()), "the token is echoed");
    }

    // The wrong algorithm for the keys there are: with only an EC P-256 key, RSA and HMAC tokens (the one
    // "signed" with the public key too) name an algorithm no key accepts.
    let ec_only = start_server(&["--auth", "jwt", "--jwt-public-key", &keys.path("p256.pub")]);
    let plain = json!({"exp": now() + 300, "spout": {"subscribe": ["*"]}});
    let (tokens, _) = jose(&json!({"tokens": [
        {"alg": "ES256", "pem": pem("p256"), "claims": plain},
        {"alg": "RS256", "pem": pem("rsa"), "claims": plain},
        {"alg": "HS256", "bytes": keys.path("p256.pub"), "claims": plain},
        {"alg": "ES384", "pem": pem("p384"), "claims": plain},
    ]}));
    assert_eq!(
        subscribe_status(ec_only.addr, "/sub/a", &bearer(&tokens[0])).status,
        200
    );
    for token in &tokens[1..] {
        assert_invalid_token(
            &subscribe_status(ec_only.addr, "/sub/a", &bearer(token)),
            "no configured key accepts the token's algorithm",
        );
    }

    // Rotation with kid: a JWKS that jose exported holds this month's and last month's keys; a token's kid picks
    // its key, a retired key's tokens are refused, and a kid naming a key of another algorithm is refused.
    let (_, jwks) = jose(&json!({"jwks": [
        {"kid": "2026-11", "alg": "RS256", "public": keys.path("rsa.pub")},
        {"kid": "2026-12", "alg": "ES256", "public": keys.path("p256.pub")},
        {"kid": "2026-12-ed", "alg": "EdDSA", "public": keys.path("ed.pub")},
    ]}));
    let jwks_path = keys.path("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).expect("write jwks");
    let rotating = start_server(&["--auth", "jwt", "--jwt-jwks", &jwks_path]);
    let rotation: [(Value, u16); 6] = [
        (
            json!({"alg": "RS256", "kid": "2026-11", "pem": pem("rsa"), "claims": plain}),
            200,
        ),
        (
            json!({"alg": "ES256", "kid": "2026-12", "pem": pem("p256"), "claims": plain}),
            200,
        ),
        (
            json!({"alg": "EdDSA", "kid": "2026-12-ed", "pem": pem("ed"), "claims": plain}),
            200,
        ),
        // Without a kid, each key that takes the algorithm is tried.
        (
            json!({"alg": "ES256", "pem": pem("p256"), "claims": plain}),
            200,
        ),
        // A retired key (no longer in the set) under an old kid.
        (
            json!({"alg": "RS256", "kid": "2026-10", "pem": pem("rsa2"), "claims": plain}),
            401,
        ),
        // This month's kid on a token of the other key's algorithm.
        (
            json!({"alg": "RS256", "kid": "2026-12", "pem": pem("rsa"), "claims": plain}),
            401,
        ),
    ];
    let specs: Vec<Value> = rotation.iter().map(|(spec, _)| spec.clone()).collect();
    let (tokens, _) = jose(&json!({ "tokens": specs }));
    for ((spec, status), token) in rotation.iter().zip(&tokens) {
        let resp = subscribe_status(rotating.addr, "/sub/a", &bearer(token));
        assert_eq!(resp.status, *status, "{spec}: {}", resp.text());
    }
}
