//! WS-PushServer's JSON: which of the original's message schemas a client's text matches (`Kind`), and the
//! envelopes the server answers in (acks, errors, not-found, the channel limit).

use serde_json::{Map, Value};

use super::super::json_text::{push_string, Style};

/// The message types of the original's schema files, in the order it tries them: the first that matches names
/// the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Error,
    Subscribe,
    Unsubscribe,
    ClientAck,
    ClientPush,
    Create,
    Delete,
    Ping,
    Push,
    ServerAck,
    Sysadmin,
}

pub(super) const KINDS: [Kind; 11] = [
    Kind::Error,
    Kind::Subscribe,
    Kind::Unsubscribe,
    Kind::ClientAck,
    Kind::ClientPush,
    Kind::Create,
    Kind::Delete,
    Kind::Ping,
    Kind::Push,
    Kind::ServerAck,
    Kind::Sysadmin,
];

pub(super) fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key)
}

pub(super) fn is_str(object: &Map<String, Value>, key: &str) -> bool {
    field(object, key).is_some_and(Value::is_string)
}

pub(super) fn is_const(object: &Map<String, Value>, key: &str, want: &str) -> bool {
    field(object, key).and_then(Value::as_str) == Some(want)
}

pub(super) fn is_str_or_null(value: Option<&Value>) -> bool {
    value.is_some_and(|v| v.is_string() || v.is_null())
}

pub(super) fn is_integer(object: &Map<String, Value>, key: &str) -> bool {
    field(object, key).is_some_and(|v| v.is_i64() || v.is_u64())
}

pub(super) fn is_string_array(value: Option<&Value>, each: impl Fn(&str) -> bool) -> bool {
    value
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().all(|i| i.as_str().is_some_and(&each)))
}

/// JSON Schema's `uuid` format: 8-4-4-4-12 hexadecimal digits, either case.
pub(super) fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The object under `data`.
pub(super) fn data(object: &Map<String, Value>) -> Option<&Map<String, Value>> {
    field(object, "data").and_then(Value::as_object)
}

/// The outgoing envelope every server message shares: type, integer code, string message, object data.
pub(super) fn is_envelope<'a>(
    object: &'a Map<String, Value>,
    message_type: &str,
) -> Option<&'a Map<String, Value>> {
    (is_const(object, "messageType", message_type)
        && is_integer(object, "code")
        && is_str(object, "message"))
    .then(|| data(object))
    .flatten()
}

/// A server action with this `action` and a `data` object.
pub(super) fn is_action<'a>(
    object: &'a Map<String, Value>,
    action: &str,
) -> Option<&'a Map<String, Value>> {
    (is_const(object, "messageType", "SERVER_ACTION") && is_const(object, "action", action))
        .then(|| data(object))
        .flatten()
}

impl Kind {
    /// Whether `value` matches this type's schema. `uuid` of a client action may be missing (rule 3).
    pub(super) fn matches(self, value: &Value) -> bool {
        let Some(object) = value.as_object() else {
            return false;
        };
        let client_action = |action: &str| {
            is_const(object, "messageType", "CLIENT_ACTION")
                && is_const(object, "action", action)
                && field(object, "uuid").is_none_or(|u| u.as_str().is_some_and(is_uuid))
                && data(object).is_some_and(|d| is_str(d, "channel"))
        };
        let client_data = |d: &Map<String, Value>| {
            field(d, "uuid")
                .and_then(Value::as_str)
                .is_some_and(is_uuid)
                && is_string_array(field(d, "subscribedChannels"), |_| true)
        };
        let channel_and_token = |action: &str| {
            is_action(object, action)
                .is_some_and(|d| is_str(d, "channel") && is_str_or_null(field(d, "channelToken")))
        };
        match self {
            Kind::Error => is_envelope(object, "ERROR")
                .is_some_and(|d| is_str_or_null(field(d, "errorDetails"))),
            Kind::Subscribe => client_action("SUBSCRIBE"),
            Kind::Unsubscribe => client_action("UNSUBSCRIBE"),
            Kind::ClientAck => is_envelope(object, "CLIENT_ACK").is_some_and(client_data),
            Kind::ClientPush => is_envelope(object, "CLIENT_PUSH").is_some_and(|d| {
                client_data(d)
                    && field(d, "pushMessage")
                        .and_then(Value::as_object)
                        .is_some_and(|p| is_str(p, "channel") && is_str(p, "message"))
            }),
            Kind::Create => is_action(object, "CREATE_CHANNEL").is_some_and(|d| {
                is_str(d, "channel")
                    && field(d, "channelToken").is_none_or(|t| t.is_string() || t.is_null())
            }),
            Kind::Delete => channel_and_token("DELETE_CHANNEL"),
            Kind::Ping => channel_and_token("PING_CHANNEL"),
            Kind::Push => is_action(object, "PUSH_MESSAGE").is_some_and(|d| {
                is_str(d, "channel")
                    && is_str(d, "channelToken")
                    && is_string_array(field(d, "recipients"), is_uuid)
                    && is_str(d, "message")
            }),
            Kind::ServerAck => is_envelope(object, "SERVER_ACK")
                .is_some_and(|d| is_str(d, "channel") && is_str_or_null(field(d, "channelToken"))),
            Kind::Sysadmin => is_envelope(object, "SERVER_SYSADMIN").is_some_and(|d| {
                is_string_array(field(d, "channels"), |_| true)
                    && is_integer(d, "channelsAmount")
                    && is_integer(d, "clientsAmount")
            }),
        }
    }

    pub(super) fn of(value: &Value) -> Option<Kind> {
        KINDS.into_iter().find(|kind| kind.matches(value))
    }
}

/// The string at `data.<key>` of a message that matched its schema.
pub(super) fn data_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get("data")?.get(key)?.as_str()
}

/// `{"messageType":..,"code":..,"message":..,"data":` + what `data` writes + `}`, as Gson writes it.
pub(super) fn envelope(
    message_type: &str,
    code: u16,
    message: &str,
    data: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"messageType\":");
    push_string(&mut out, message_type, Style::Gson);
    out.extend_from_slice(b",\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    push_string(&mut out, message, Style::Gson);
    out.extend_from_slice(b",\"data\":");
    data(&mut out);
    out.push(b'}');
    out
}

pub(super) fn error(code: u16, message: &str, details: Option<&str>) -> Vec<u8> {
    envelope("ERROR", code, message, |out| {
        out.extend_from_slice(b"{\"errorDetails\":");
        match details {
            Some(details) => push_string(out, details, Style::Gson),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    })
}

pub(super) fn server_ack(message: &str, channel: &str, token: Option<&str>) -> Vec<u8> {
    envelope("SERVER_ACK", 200, message, |out| {
        out.extend_from_slice(b"{\"channel\":");
        push_string(out, channel, Style::Gson);
        out.extend_from_slice(b",\"channelToken\":");
        match token {
            Some(token) => push_string(out, token, Style::Gson),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    })
}

pub(super) fn not_found(channel: &str) -> Vec<u8> {
    let details = format!("Could not find a WebSocketChannel called \"{channel}\"");
    error(404, "Not found", Some(&details))
}

pub(super) fn channel_limit() -> Vec<u8> {
    error(
        503,
        "Service Unavailable",
        Some("The channel limit (--max-channels) is reached"),
    )
}
