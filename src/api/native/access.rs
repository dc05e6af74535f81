//! Who may do what on the native API: the publish key (`--publish-key`) and, with `--auth jwt`, signed tokens, or
//! with `--auth hook`, the application's auth hook. The token checks are `auth`'s; this file finds a request's
//! token, maps the grants onto the request and words the refusals: `401 invalid_token` (missing, malformed, bad
//! signature, expired, wrong audience or issuer) and `403 forbidden_channel` naming the first channel the token
//! does not cover. The hook's `401` and `403` are worded the same way, so a client handles both modes alike;
//! a hook that gives no decision is a `503` naming why (`HookFailure::code`).
//!
//! Under `--auth hook` publishing and channel admin are as without auth: they need `--publish-key` when it is
//! set (the hook is asked about subscribes only).
//!
//! Where a token comes from, first found wins: `Authorization: Bearer`, the `token` query key (a browser's
//! `EventSource` cannot set headers), the `--jwt-cookie` cookie (an `EventSource` with `withCredentials`). A
//! publish reads the header only: a cookie would let any page the user visits publish as them (CSRF).
//!
//! A token is never logged, echoed in an answer or kept: a stream keeps its client id and its expiry.

use std::time::{Duration, Instant};

use super::input::{client_id, Query};
use super::ApiError;
use crate::api::{Ctx, Request};
use crate::auth::verdict::{HookFailure, HookVerdict};
use crate::auth::{Grants, TokenError};
use crate::secret::constant_time_eq;

/// `401 invalid_token`, counted.
fn invalid_token(ctx: &mut Ctx, message: impl Into<String>) -> ApiError {
    ctx.counters.auth_refused += 1;
    ApiError::new(401, "invalid_token", message)
}

/// `403 forbidden_channel` naming `channel`, counted; `by` is who refused (the token, the auth hook).
fn forbidden(ctx: &mut Ctx, channel: &str, what: &str, by: &str) -> ApiError {
    ctx.counters.auth_refused += 1;
    let mut e = ApiError::new(
        403,
        "forbidden_channel",
        format!("{by} does not allow {what} channel {channel}"),
    );
    e.channel = Some(channel.into());
    e
}

fn refused(ctx: &mut Ctx, e: TokenError) -> ApiError {
    invalid_token(ctx, e.as_str())
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(b"Bearer ".len())?;
    scheme.eq_ignore_ascii_case(b"Bearer ").then_some(token)
}

/// The value of cookie `name` in the request's `Cookie` fields (`a=1; name=value`, RFC 6265 §5.4).
fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r [u8]> {
    cookie_in(req.head.header_lines(req.buf, "cookie"), name)
}

fn cookie_in<'a>(mut lines: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a [u8]> {
    lines
        .by_ref()
        .flat_map(|line| line.split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (key, value) = pair.split_at_checked(name.len())?;
            (key == name.as_bytes())
                .then_some(value)?
                .strip_prefix(b"=")
        })
}

/// With `--auth jwt`, the grants of the subscribe request's token, if it carries one; a token that fails a check
/// is refused here, even on a public channel.
pub(super) fn subscriber_grants(
    req: &Request,
    ctx: &mut Ctx,
    query: &Query,
) -> Result<Option<Grants>, ApiError> {
    if !ctx.auth.checks_tokens() {
        return Ok(None);
    }
    let token = req
        .header("authorization")
        .and_then(bearer_token)
        .or(query.get("token").map(str::as_bytes))
        .or_else(|| cookie(req, &ctx.config.jwt_cookie));
    match token {
        None => Ok(None),
        Some(token) => ctx
            .auth
            .verify(token)
            .map(Some)
            .map_err(|e| refused(ctx, e)),
    }
}

/// With `--auth jwt`, every channel of a stream must be public, covered by the token's `subscribe` claim, or one of
/// its `channels` (what the token itself subscribes to it grants).
pub(super) fn may_subscribe(
    ctx: &mut Ctx,
    grants: Option<&Grants>,
    names: &[&str],
) -> Result<(), ApiError> {
    if !ctx.auth.checks_tokens() {
        return Ok(());
    }
    for name in names.iter().filter(|name| !ctx.auth.is_public(name)) {
        match grants {
            None => {
                return Err(invalid_token(
                    ctx,
                    format!("channel {name} is private: subscribing needs a token"),
                ))
            }
            Some(g) if !g.subscribe.covers(name) && !g.channels.iter().any(|c| **c == **name) => {
                return Err(forbidden(ctx, name, "subscribing to", "the token"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What the auth hook allowed: the channels (`None`: all those asked for) and the stream's client id.
#[derive(Default)]
pub(super) struct HookAllowed {
    pub channels: Option<Box<[Box<str>]>>,
    pub client_id: Option<Box<str>>,
}

impl HookAllowed {
    /// The channels of `names` the hook allowed, in request order; `403` when it allowed none of them.
    pub(super) fn narrow<'n>(
        &self,
        ctx: &mut Ctx,
        names: &[&'n str],
    ) -> Result<Vec<&'n str>, ApiError> {
        let Some(allowed) = &self.channels else {
            return Ok(names.to_vec());
        };
        let kept: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| allowed.iter().any(|a| **a == **name))
            .collect();
        match (kept.is_empty(), names.first()) {
            (true, Some(first)) => Err(forbidden(ctx, first, "subscribing to", "the auth hook")),
            _ => Ok(kept),
        }
    }
}

/// With `--auth hook`, the hook's decision on a subscribe to `names`: `Ok(None)` when the request was just sent
/// to the hook (the caller parks it with `Action::Await` and gets here again with the verdict in `ctx`). Without
/// the hook, everything asked is allowed.
pub(super) fn hook_check(
    req: &Request,
    ctx: &mut Ctx,
    names: &[&str],
    asked_id: Option<&str>,
) -> Result<Option<HookAllowed>, ApiError> {
    let Some(hook) = ctx.auth.hook() else {
        return Ok(Some(HookAllowed::default()));
    };
    // Left in `ctx`, not taken: a subscribe that parks again for Redis keeps its verdict (`conn::Parked`).
    let verdict = match ctx.verdict.clone() {
        Some(verdict) => verdict,
        None => {
            let (body, cacheable) = hook_request(req, ctx, names, asked_id);
            return match hook.ask(ctx.waiter, body, cacheable, ctx.now) {
                Ok(()) => Ok(None),
                Err(failure) => Err(hook_failed(ctx, failure)),
            };
        }
    };
    match verdict {
        HookVerdict::Allowed {
            channels,
            client_id: None,
        } => Ok(Some(HookAllowed {
            channels,
            client_id: None,
        })),
        HookVerdict::Allowed {
            channels,
            client_id: Some(id),
        } => match client_id(id.as_bytes()) {
            Ok(_) => Ok(Some(HookAllowed {
                channels,
                client_id: Some(id),
            })),
            Err(_) => Err(hook_failed(ctx, HookFailure::BadAnswer)),
        },
        HookVerdict::Unauthorized => Err(invalid_token(
            ctx,
            "the auth hook did not accept the request's credentials",
        )),
        HookVerdict::Forbidden => {
            let first = names.first().copied().unwrap_or_default();
            Err(forbidden(ctx, first, "subscribing to", "the auth hook"))
        }
        HookVerdict::Failed(failure) => Err(hook_failed(ctx, failure)),
    }
}

/// `503` naming why the hook gave no decision, counted.
fn hook_failed(ctx: &mut Ctx, failure: HookFailure) -> ApiError {
    ctx.counters.auth_hook_failed += 1;
    log::debug!("auth hook: {failure}");
    ApiError::new(503, failure.code(), failure.to_string())
}

/// The hook's request, `{"channels":[..],"client_id":..,"headers":{..}}`, and whether it carries credentials
/// (`Authorization` or `Cookie`; only then may its decision be cached). Headers go under their lowercase names;
/// a field sent on several lines is joined as HTTP reads it (`; ` for cookies, RFC 6265 §5.4; `, ` else).
fn hook_request(
    req: &Request,
    ctx: &Ctx,
    names: &[&str],
    asked_id: Option<&str>,
) -> (Vec<u8>, bool) {
    let mut headers = serde_json::Map::new();
    let passed = ["authorization", "cookie"]
        .into_iter()
        .chain(ctx.config.auth_hook_headers.iter().map(String::as_str));
    for name in passed {
        let separator: &[u8] = if name == "cookie" { b"; " } else { b", " };
        let mut lines = req.head.header_lines(req.buf, name).peekable();
        if lines.peek().is_none() || headers.contains_key(name) {
            continue;
        }
        let joined = lines.collect::<Vec<_>>().join(separator);
        headers.insert(
            name.to_string(),
            String::from_utf8_lossy(&joined).into_owned().into(),
        );
    }
    let cacheable = headers.contains_key("authorization") || headers.contains_key("cookie");
    let body = serde_json::json!({
        "channels": names,
        "client_id": asked_id,
        "headers": headers,
    });
    (body.to_string().into_bytes(), cacheable)
}

/// A stream's client id, if not the server's to assign. Without auth, the `client_id` query key; with `--auth
/// jwt`, the token's `sub` (a `client_id` key may only repeat it: a client id is no longer anyone's to claim, so
/// `?to=` reaches only the user the token names).
pub(super) fn stream_client_id(
    ctx: &mut Ctx,
    grants: Option<&Grants>,
    asked: Option<&str>,
) -> Result<Option<Box<str>>, ApiError> {
    if !ctx.auth.checks_tokens() {
        return asked
            .map(|id| client_id(id.as_bytes()).map(Into::into))
            .transpose();
    }
    let sub = match grants.and_then(|g| g.client_id.as_deref()) {
        Some(sub) => Some(client_id(sub.as_bytes()).map_err(|e| {
            invalid_token(
                ctx,
                format!("the token's sub is not a client id: {}", e.message),
            )
        })?),
        None => None,
    };
    match (sub, asked) {
        (sub, None) => Ok(sub.map(Into::into)),
        (Some(sub), Some(asked)) if sub == asked => Ok(Some(sub.into())),
        (_, Some(_)) => {
            ctx.counters.auth_refused += 1;
            Err(ApiError::new(
                403,
                "forbidden_client_id",
                "with --auth jwt a stream's client id is its token's sub; leave client_id out",
            ))
        }
    }
}

/// When a stream opened with `grants` must end: when its token stops being accepted, at `exp` plus `--jwt-leeway`
/// (the tolerance the check itself applies). Ending it sooner would let the client reconnect at once with the same
/// token, which is still accepted, into a stream that ends again at once.
pub(super) fn stream_expiry(ctx: &Ctx, grants: Option<&Grants>) -> Option<Instant> {
    let exp = grants?.expires?;
    let wall = ctx
        .wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // The check compares whole seconds (`exp < now - leeway` refuses), so a token is accepted through the second
    // `exp + leeway` and refused from the next one.
    let refused_from = Duration::from_secs(exp.saturating_add(1)) + ctx.config.jwt_leeway;
    let left = refused_from.saturating_sub(wall);
    // A date centuries away is no date: `Instant` cannot hold every u64 of seconds.
    ctx.now.checked_add(left)
}

/// Who is publishing: the holder of the publish key (or anyone, without key or auth), or a token's bearer.
pub(super) enum Publisher {
    Anyone,
    Token(Grants),
}

impl Publisher {
    /// Whether this publisher may publish to every one of `channels` (a batch is authorized whole).
    pub(super) fn check<'a>(
        &self,
        ctx: &mut Ctx,
        mut channels: impl Iterator<Item = &'a str>,
    ) -> Result<(), ApiError> {
        let Publisher::Token(grants) = self else {
            return Ok(());
        };
        match channels.find(|c| !grants.publish.covers(c)) {
            Some(channel) => Err(forbidden(ctx, channel, "publishing to", "the token")),
            None => Ok(()),
        }
    }
}

/// The publisher of a request: `Authorization: Bearer` carries the publish key (compared in constant time) or,
/// with `--auth jwt`, a token whose `publish` claim then decides per channel (`Publisher::check`).
pub(super) fn publisher(req: &Request, ctx: &mut Ctx) -> Result<Publisher, ApiError> {
    let given = req.header("authorization").and_then(bearer_token);
    if let (Some(key), Some(given)) = (ctx.live.publish_key(), given) {
        if constant_time_eq(given, key.as_bytes()) {
            return Ok(Publisher::Anyone);
        }
    }
    if ctx.auth.checks_tokens() {
        return match given {
            None => Err(invalid_token(
                ctx,
                "publishing needs Authorization: Bearer <token or publish key>",
            )),
            Some(token) => ctx
                .auth
                .verify(token)
                .map(Publisher::Token)
                .map_err(|e| refused(ctx, e)),
        };
    }
    publish_key(req, ctx, None).map(|()| Publisher::Anyone)
}

/// Channel admin (listing, info, delete) needs `Authorization: Bearer <publish key>` when a key is set, and
/// always with `--auth jwt` (channel names and client ids may be private too); no token grants it.
pub(super) fn channel_admin(req: &Request, ctx: &Ctx) -> Result<(), ApiError> {
    admin(req, ctx, None)
}

/// The status page and its stream are admin too, and the key may also come as the `key` query value: a browser
/// opening the page cannot set a header, nor can the page's `EventSource` (the page passes its own `key` on).
pub(super) fn status_viewer(req: &Request, ctx: &Ctx, query: &Query) -> Result<(), ApiError> {
    admin(req, ctx, query.get("key").map(str::as_bytes))
}

fn admin(req: &Request, ctx: &Ctx, query_key: Option<&[u8]>) -> Result<(), ApiError> {
    if ctx.auth.checks_tokens() && ctx.live.publish_key().is_none() {
        return Err(ApiError::new(
            401,
            "unauthorized",
            "with --auth jwt, channel admin and the status page need --publish-key and Authorization: Bearer <publish key>",
        ));
    }
    publish_key(req, ctx, query_key)
}

/// With `--publish-key`, `Authorization: Bearer <publish key>`, or `query_key` where a route takes one (compared in
/// constant time); anyone without it.
fn publish_key(req: &Request, ctx: &Ctx, query_key: Option<&[u8]>) -> Result<(), ApiError> {
    let Some(key) = ctx.live.publish_key() else {
        return Ok(());
    };
    let given = req
        .header("authorization")
        .and_then(bearer_token)
        .or(query_key)
        .unwrap_or(b"");
    if constant_time_eq(given, key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "unauthorized",
            "this needs Authorization: Bearer <publish key>",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookie_values_are_found() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        let lines: [&[u8]; 2] = [b"a=1; spout_token=xyz", b"spout_token=second"];
        assert_eq!(
            cookie_in(lines.into_iter(), "spout_token"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie_in(lines.into_iter(), "a"), Some(&b"1"[..]));
        for absent in ["spout", "spout_token2", "b", ""] {
            assert_eq!(cookie_in(lines.into_iter(), absent), None, "{absent}");
        }
        let spaced: [&[u8]; 1] = [b" x=1 ;  spout_token=abc "];
        assert_eq!(
            cookie_in(spaced.into_iter(), "spout_token"),
            Some(&b"abc"[..])
        );
    }
}
