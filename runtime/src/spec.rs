//! The const records `#[webhook]` generates, and the const builder users write to share endpoint
//! settings between handlers.

use std::fmt;

/// Endpoint-level settings, shared by every handler mounted on one path.
///
/// `#[webhook(path = "...", sig = "...", ...)]` builds one of these from its keys. To avoid
/// repeating settings across handlers, write the endpoint once as a `const` and name it:
///
/// ```
/// use hooksmith::{Endpoint, SecretSource};
///
/// const CONNECTOR: Endpoint = Endpoint::new("/events")
///     .sig("hmac-sha256")
///     .header("X-Connector-Signature")
///     .prefix("sha256=")
///     .event_field("type")
///     .secrets(&[SecretSource::env("CONNECTOR_SECRET")]);
///
/// #[hooksmith::webhook(endpoint = CONNECTOR, event = "actions")]
/// async fn on_actions(body: hooksmith::Raw) {}
/// # fn main() {}
/// ```
///
/// A const endpoint is checked when the app starts (an unknown scheme or a bad path is a startup
/// error naming the handler); keys written in the attribute are also checked at compile time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) path: &'static str,
    pub(crate) sig: &'static str,
    pub(crate) header: Option<&'static str>,
    pub(crate) prefix: Option<&'static str>,
    pub(crate) encoding: Option<Encoding>,
    pub(crate) secrets: &'static [SecretSource],
    pub(crate) event_header: Option<&'static str>,
    pub(crate) event_field: Option<&'static str>,
    pub(crate) id_header: Option<&'static str>,
    pub(crate) id_field: Option<&'static str>,
    pub(crate) max_body: Option<u64>,
    pub(crate) tolerance_secs: Option<u64>,
    pub(crate) methods: &'static [&'static str],
    pub(crate) name: Option<&'static str>,
    pub(crate) enabled: bool,
}

impl Endpoint {
    /// An endpoint at `path` with no scheme chosen yet: set one with [`Endpoint::sig`].
    pub const fn new(path: &'static str) -> Self {
        Self {
            path,
            sig: "",
            header: None,
            prefix: None,
            encoding: None,
            secrets: &[],
            event_header: None,
            event_field: None,
            id_header: None,
            id_field: None,
            max_body: None,
            tolerance_secs: None,
            methods: &[],
            name: None,
            enabled: true,
        }
    }

    /// The signature scheme (`"github"`, `"hmac-sha256"`, ... or `"none"`).
    pub const fn sig(mut self, scheme: &'static str) -> Self {
        self.sig = scheme;
        self
    }

    /// The header that carries the signature (generic `hmac-*` schemes).
    pub const fn header(mut self, header: &'static str) -> Self {
        self.header = Some(header);
        self
    }

    /// A prefix before the digest in the signature header, such as `"sha256="`.
    pub const fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// How the digest is written in the signature header (generic `hmac-*` schemes).
    pub const fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = Some(encoding);
        self
    }

    /// Where the secrets come from; any one of them may verify a delivery (rotation).
    pub const fn secrets(mut self, secrets: &'static [SecretSource]) -> Self {
        self.secrets = secrets;
        self
    }

    /// The header holding the event name.
    pub const fn event_header(mut self, header: &'static str) -> Self {
        self.event_header = Some(header);
        self
    }

    /// The dotted JSON body field holding the event name.
    pub const fn event_field(mut self, field: &'static str) -> Self {
        self.event_field = Some(field);
        self
    }

    /// The header holding the provider's delivery id, used for de-duplication.
    pub const fn id_header(mut self, header: &'static str) -> Self {
        self.id_header = Some(header);
        self
    }

    /// The dotted JSON body field holding the provider's delivery id.
    pub const fn id_field(mut self, field: &'static str) -> Self {
        self.id_field = Some(field);
        self
    }

    /// The largest body accepted, in bytes (default: the scheme's, else 1 MiB).
    pub const fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// How far a signed timestamp may be from now, in seconds, either way (default 300).
    pub const fn tolerance_secs(mut self, seconds: u64) -> Self {
        self.tolerance_secs = Some(seconds);
        self
    }

    /// The HTTP methods accepted (default `POST`).
    pub const fn methods(mut self, methods: &'static [&'static str]) -> Self {
        self.methods = methods;
        self
    }

    /// A human name, shown in the startup banner and the admin API.
    pub const fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Whether the endpoint is mounted as enabled; a disabled endpoint answers 404. Configuration
    /// can flip this without a rebuild (see [`crate::AppBuilder::disable`]).
    pub const fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The path this endpoint is mounted at.
    pub const fn path(&self) -> &'static str {
        self.path
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            path,
            sig,
            header,
            prefix,
            encoding,
            secrets,
            event_header,
            event_field,
            id_header,
            id_field,
            max_body,
            tolerance_secs,
            methods,
            name,
            enabled,
        } = self;
        f.debug_struct("Endpoint")
            .field("path", path)
            .field("sig", sig)
            .field("header", header)
            .field("prefix", prefix)
            .field("encoding", encoding)
            .field("secrets", secrets)
            .field("event_header", event_header)
            .field("event_field", event_field)
            .field("id_header", id_header)
            .field("id_field", id_field)
            .field("max_body", max_body)
            .field("tolerance_secs", tolerance_secs)
            .field("methods", methods)
            .field("name", name)
            .field("enabled", enabled)
            .finish()
    }
}

/// How a digest is written in a signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase or uppercase hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Where one secret comes from. Only the variable's *name* is ever stored or printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSource {
    pub(crate) env: &'static str,
    pub(crate) optional: bool,
}

impl SecretSource {
    /// A secret read from the environment variable `name`; the app refuses to start when it is
    /// unset or empty.
    pub const fn env(name: &'static str) -> Self {
        Self {
            env: name,
            optional: false,
        }
    }

    /// The same, but an unset variable is skipped: for the old secret during a rotation.
    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The environment variable's name.
    pub const fn name(&self) -> &'static str {
        self.env
    }
}

/// When a delivery is acknowledged to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ack {
    /// Persist the delivery, answer 204, and run the handler from the queue (the default).
    #[default]
    Stored,
    /// Persist the delivery, run the handler inside the request, and answer with its response.
    Handled,
}

/// How often and how fast a failed handler run is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Retries after the first attempt; `0` never retries.
    pub max: u32,
    /// The delay before the first retry, in milliseconds.
    pub backoff_ms: u64,
    /// The factor each later delay grows by.
    pub factor: u32,
    /// The longest delay between two attempts, in milliseconds.
    pub max_delay_ms: u64,
}

impl Retry {
    /// Five retries starting at one second, doubling, at most one hour apart, with full jitter.
    pub const DEFAULT: Retry = Retry {
        max: 5,
        backoff_ms: 1_000,
        factor: 2,
        max_delay_ms: 3_600_000,
    };

    /// The longest delay before retry number `retry` (1-based); the run waits a uniformly random
    /// part of it (full jitter).
    pub fn ceiling_ms(&self, retry: u32) -> u64 {
        let growth = u64::from(self.factor.max(1)).saturating_pow(retry.saturating_sub(1));
        self.backoff_ms
            .saturating_mul(growth)
            .min(self.max_delay_ms)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A predicate on the JSON body and the headers, written as `filter(...)` in the attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Filter {
    /// The target equals the value.
    Eq(Target, Value),
    /// The target is a string matched by the regular expression (unanchored, like `regex`).
    Regex(Target, &'static str),
    /// Every filter holds.
    All(&'static [Filter]),
    /// At least one filter holds.
    Any(&'static [Filter]),
    /// The filter does not hold.
    Not(&'static Filter),
}

/// What a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A dotted JSON path in the body.
    Json(&'static str),
    /// A request header (case-insensitive name).
    Header(&'static str),
}

/// A literal a filter compares with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A JSON string (or a header value).
    Str(&'static str),
    /// A JSON integer.
    Int(i64),
    /// A JSON number with a fraction.
    Float(f64),
    /// A JSON boolean.
    Bool(bool),
    /// JSON `null` (also matches a missing field).
    Null,
}
