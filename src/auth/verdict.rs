//! What the auth hook (`--auth hook`) answered about one subscribe: the types that cross from the hook's threads to
//! a worker's inbox. They depend on nothing, so the bus that carries them and the hook that makes them build on
//! them without importing one another.

/// The hook's decision on one subscribe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookVerdict {
    /// A `2xx` answer: the stream may open. `client_id` sets its client id; `channels` narrows the request's
    /// channels (names outside the request are ignored: an answer can refuse channels, never add them).
    Allowed {
        client_id: Option<Box<str>>,
        channels: Option<Box<[Box<str>]>>,
    },
    /// `401`: the credentials are missing or not accepted.
    Unauthorized,
    /// `403`: the credentials are good but not for these channels.
    Forbidden,
    /// No decision: the subscribe is answered `503`.
    Failed(HookFailure),
}

/// Why the hook gave no decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFailure {
    /// `--auth-hook-max-pending` checks are already waiting.
    Busy,
    /// No answer within `--auth-hook-timeout` (counted from when the subscribe asked).
    Timeout,
    /// The connection to the hook was refused or broke.
    Unreachable,
    /// A status other than 2xx, 401 or 403.
    Status(u16),
    /// A 2xx whose body is not `{"client_id": string?, "channels": [string]?}`, or a client id spout refuses.
    BadAnswer,
}

impl HookFailure {
    /// The error code of the `503` answer.
    pub fn code(&self) -> &'static str {
        match self {
            HookFailure::Busy => "auth_hook_busy",
            HookFailure::Timeout => "auth_hook_timeout",
            HookFailure::Unreachable => "auth_hook_unreachable",
            HookFailure::Status(_) => "auth_hook_failed",
            HookFailure::BadAnswer => "auth_hook_bad_answer",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            HookFailure::Busy => {
                "too many subscribes wait for the auth hook (--auth-hook-max-pending)"
            }
            HookFailure::Timeout => "the auth hook did not answer within --auth-hook-timeout",
            HookFailure::Unreachable => "the auth hook cannot be reached",
            HookFailure::Status(_) => "the auth hook answered a status other than 2xx, 401 or 403",
            HookFailure::BadAnswer => {
                "the auth hook's answer is not {\"client_id\": string, \"channels\": [string]}"
            }
        }
    }
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookFailure::Status(status) => write!(f, "{} ({status})", self.as_str()),
            _ => f.write_str(self.as_str()),
        }
    }
}
