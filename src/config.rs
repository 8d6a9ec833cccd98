//! Layered configuration: built-in defaults, then the TOML file
//! (`--config` / `HERALD_CONFIG`, default `config/herald.toml`), then
//! `HERALD__SECTION__KEY` environment variables (`[[connectors]]` entries by
//! name or index: `HERALD__CONNECTORS__<NAME|INDEX>__KEY`), then cross-field
//! validation.
//!
//! A bad configuration stops start-up with a message that names the key and
//! the problem; nothing is silently defaulted once the operator wrote it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::limits::LimitPolicy;
use crate::model::Class;
use crate::text::NumberPolicy;

/// Default location of the config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/herald.toml";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` / `HERALD_CONFIG` does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// A key has the wrong type, an unknown name, or the file is not TOML.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A key parsed but its value is not acceptable.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The whole configuration of one Herald node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub messages: MessagesConfig,
    pub dispatch: DispatchConfig,
    pub routing: RoutingConfig,
    pub connectors: Vec<ConnectorConfig>,
    pub scripts: ScriptsConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub inbound: InboundConfig,
    pub webhooks: WebhooksConfig,
    pub otp: crate::otp::config::OtpConfig,
    pub retention: RetentionConfig,
    pub senders: SendersConfig,
    pub console: crate::console::config::ConsoleConfig,
    pub broadcasts: crate::broadcast::config::BroadcastsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            messages: MessagesConfig::default(),
            dispatch: DispatchConfig::default(),
            routing: RoutingConfig::default(),
            connectors: vec![ConnectorConfig::Sim(SimConfig::named("sim"))],
            scripts: ScriptsConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            inbound: InboundConfig::default(),
            webhooks: WebhooksConfig::default(),
            otp: crate::otp::config::OtpConfig::default(),
            retention: RetentionConfig::default(),
            senders: SendersConfig::default(),
            console: crate::console::config::ConsoleConfig::default(),
            broadcasts: crate::broadcast::config::BroadcastsConfig::default(),
        }
    }
}

/// `[senders]`: sender ids no ordinary key may use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendersConfig {
    /// Patterns (`*` wildcard, any case) of sender ids only keys with the
    /// `broadcast` scope may use, e.g. public-warning names.
    pub reserved: Vec<String>,
}

impl Config {
    /// The reserved sender ids (validated at load).
    pub fn reserved_senders(&self) -> crate::senders::SenderPatterns {
        crate::senders::SenderPatterns::parse(&self.senders.reserved).unwrap_or_default()
    }
}

/// `[retention]`: how long finished records are kept. A record with work
/// still pending (queued, waiting for a receipt, a webhook to deliver) is
/// kept whatever its age.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Final messages and their carrier-id links, counted from their final
    /// status (or their status webhook's delivery). At least
    /// `messages.idempotency_ttl`, so a key never outlives its message.
    #[serde(with = "humantime_serde")]
    pub messages: Duration,
    /// Inbound messages, counted from their arrival.
    #[serde(with = "humantime_serde")]
    pub inbound: Duration,
    /// Delivery receipts that matched no submit, counted from their arrival.
    #[serde(with = "humantime_serde")]
    pub receipts: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        use crate::store::Retention;
        RetentionConfig {
            messages: Retention::DEFAULT_MESSAGES,
            inbound: Retention::DEFAULT_INBOUND,
            receipts: Retention::DEFAULT_RECEIPTS,
        }
    }
}

impl Config {
    /// What store maintenance keeps, from `[retention]` and
    /// `messages.idempotency_ttl`.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            idempotency: self.messages.idempotency_ttl,
            messages: self.retention.messages,
            inbound: self.retention.inbound,
            receipts: self.retention.receipts,
        }
    }
}

/// `[http]`: the API listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the API binds to. Loopback by default: exposing it is a choice.
    pub listen: SocketAddr,
    /// Largest body accepted by single-item endpoints.
    pub max_body_bytes: usize,
    /// Largest body accepted by `POST /v1/messages/batch`.
    pub max_batch_body_bytes: usize,
    /// Bytes of batch bodies being read and admitted at once (each batch
    /// counts its `Content-Length`, or `max_batch_body_bytes` without one).
    /// A batch that does not fit is answered 503 with `Retry-After` before
    /// its body is read: this bounds the memory batches can take.
    pub max_batch_bytes_in_flight: usize,
    /// Most requests served at once; beyond it callers get 503 rather than
    /// an ever-growing queue.
    pub max_concurrent_requests: usize,
    /// Requests that take longer are answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open connections at most; past it new ones wait in the kernel's
    /// backlog until one closes (keep it below the process's file limit).
    pub max_connections: usize,
    /// A client must send a whole request head within this, counted from
    /// when the connection opens or its previous response was sent: so it
    /// is also how long an idle keep-alive connection is kept.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 32 * 1024 * 1024,
            max_batch_bytes_in_flight: 64 * 1024 * 1024,
            max_concurrent_requests: 4096,
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Which store backs this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Embedded,
    Redis,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Embedded database file; its directory is created when missing.
    pub path: PathBuf,
    /// Page cache of the embedded store, in MiB. Bounds its memory use.
    pub cache_mb: usize,
    /// Redis URL, for `kind = "redis"` (a secret: it may carry a password).
    pub url: Option<Secret>,
    /// Prefix of every Redis key (`{prefix}:…`): deployments sharing one
    /// Redis use different prefixes.
    pub prefix: String,
    /// This node's name among nodes sharing the Redis store. Default:
    /// host name and HTTP port (host name and process id when the port is
    /// chosen by the system). Two live nodes must never share one.
    pub node_id: Option<String>,
    /// A node silent for this long has its claimed messages queued again by
    /// the other nodes.
    #[serde(with = "humantime_serde")]
    pub lease_timeout: Duration,
    /// How much loss of acknowledged messages the operator accepts from
    /// Redis; checked against its `appendonly`/`appendfsync` at start.
    pub redis_durability: RedisDurability,
}

/// What Redis must guarantee before a node serves: a 202 promises the
/// message is stored, and on Redis that promise is only as good as its
/// append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisDurability {
    /// `appendonly yes` and `appendfsync always`: nothing acknowledged is
    /// lost even if Redis or its host crashes.
    #[default]
    Always,
    /// `appendonly yes` and `appendfsync everysec` (or `always`): a crash of
    /// Redis or its host may lose about the last second of acknowledged
    /// messages; a clean restart loses nothing.
    Everysec,
    /// Nothing is required (no persistence, or a Redis whose `CONFIG` is
    /// disabled and whose durability the operator vouches for): what the
    /// check finds is only logged.
    AcceptLoss,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            path: PathBuf::from("data/herald.db"),
            cache_mb: 64,
            url: None,
            prefix: "herald".into(),
            node_id: None,
            lease_timeout: Duration::from_secs(10),
            redis_durability: RedisDurability::default(),
        }
    }
}

/// `[messages]`: what admission accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Longest message, in segments; longer bodies are refused with 422.
    pub max_segments: u32,
    /// ISO 3166 region (e.g. "GB") used to read national-format numbers.
    /// Empty: only E.164 is accepted.
    pub default_region: String,
    /// `strict`: recipients must be in a range libphonenumber's metadata
    /// knows; `e164`: any well-formed E.164 number of an existing calling
    /// code, for ranges newer than the metadata (see [`NumberPolicy`]).
    pub number_policy: NumberPolicy,
    /// How long idempotency keys are remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Default validity per class: a message not submitted within it expires.
    pub validity: ValidityConfig,
    /// Largest `validity_seconds` a caller may ask for.
    #[serde(with = "humantime_serde")]
    pub max_validity: Duration,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            max_segments: 10,
            default_region: String::new(),
            number_policy: NumberPolicy::Strict,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            validity: ValidityConfig::default(),
            max_validity: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// `[messages.validity]`: default validity per class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidityConfig {
    #[serde(with = "humantime_serde")]
    pub emergency: Duration,
    #[serde(with = "humantime_serde")]
    pub otp: Duration,
    #[serde(with = "humantime_serde")]
    pub transactional: Duration,
    #[serde(with = "humantime_serde")]
    pub marketing: Duration,
}

impl Default for ValidityConfig {
    fn default() -> Self {
        ValidityConfig {
            emergency: Duration::from_secs(3600),
            otp: Duration::from_secs(600),
            transactional: Duration::from_secs(24 * 3600),
            marketing: Duration::from_secs(24 * 3600),
        }
    }
}

impl ValidityConfig {
    /// The default validity of `class`.
    pub fn for_class(&self, class: Class) -> Duration {
        match class {
            Class::Emergency => self.emergency,
            Class::Otp => self.otp,
            Class::Transactional => self.transactional,
            Class::Marketing => self.marketing,
        }
    }
}

/// `[dispatch]`: retries and shutdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Submit attempts before a temporarily failing message is failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// On shutdown, how long in-flight submits may take to finish.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A submit with no answer within this is treated as a temporary failure.
    #[serde(with = "humantime_serde")]
    pub submit_timeout: Duration,
    /// A connector that has not been ready (e.g. no SMPP bind up) for this
    /// long hands its queued messages to the next connector of their route.
    #[serde(with = "humantime_serde")]
    pub failover_after: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(30),
            failover_after: Duration::from_secs(30),
        }
    }
}

/// `[routing]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Connectors tried in order when no script decides. Empty: the first
    /// configured connector.
    pub default: Vec<String>,
}

/// A secret from the configuration (a bind password, a signing key): its
/// `Debug` never shows it and it has no `Display`, so no log line or error
/// message can carry it by accident. [`Secret::expose`] is the one way in.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

/// One `[[connectors]]` entry, told apart by its `kind`. Each kind takes
/// only its own keys: serde refuses a key of another kind by name (e.g.
/// `port` on a `sim` connector).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// A handful exist, read once at start: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ConnectorConfig {
    /// The in-process simulated carrier.
    Sim(SimConfig),
    /// An SMPP 3.4 carrier over TCP (optionally TLS).
    Smpp(SmppConfig),
}

/// Reads `kind` first, then the rest as that kind's struct, so that an
/// error names the key it is about (`split`, `tps`, …); serde's derived
/// internally tagged enums lose the key of an error inside the entry.
impl<'de> Deserialize<'de> for ConnectorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use figment::value::Value;
        use serde::de::Error;
        let mut entry = figment::value::Dict::deserialize(d)?;
        let kind = match entry.remove("kind") {
            Some(Value::String(_, kind)) => kind,
            Some(_) => return Err(D::Error::custom("`kind` must be \"sim\" or \"smpp\"")),
            None => return Err(D::Error::missing_field("kind")),
        };
        let rest = Value::from(entry);
        fn read<'a, T: Deserialize<'a>, E: Error>(value: &'a Value) -> Result<T, E> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    E::custom(e.into_inner())
                } else {
                    E::custom(format_args!("`{path}`: {}", e.into_inner()))
                }
            })
        }
        match kind.as_str() {
            "sim" => read(&rest).map(ConnectorConfig::Sim),
            "smpp" => read(&rest).map(ConnectorConfig::Smpp),
            other => Err(D::Error::custom(format_args!(
                "unknown connector kind \"{other}\" (\"sim\" or \"smpp\")"
            ))),
        }
    }
}

impl ConnectorConfig {
    pub fn name(&self) -> &str {
        match self {
            ConnectorConfig::Sim(c) => &c.name,
            ConnectorConfig::Smpp(c) => &c.name,
        }
    }

    /// Outstanding submits allowed at once (per bind for SMPP).
    pub fn window(&self) -> usize {
        match self {
            ConnectorConfig::Sim(c) => c.window,
            ConnectorConfig::Smpp(c) => c.window,
        }
    }

    /// The SMPP settings, for an smpp connector.
    pub fn as_smpp(&self) -> Option<&SmppConfig> {
        match self {
            ConnectorConfig::Smpp(c) => Some(c),
            ConnectorConfig::Sim(_) => None,
        }
    }

    /// `sim` or `smpp`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorConfig::Sim(_) => "sim",
            ConnectorConfig::Smpp(_) => "smpp",
        }
    }
}

/// `kind = "sim"`: the in-process simulated carrier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub name: String,
    /// Outstanding submits allowed at once.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Submits per second; 0 = no cap.
    #[serde(default)]
    pub tps: u32,
    /// Submit → receipt delay, in milliseconds.
    #[serde(default = "default_sim_delay_ms")]
    pub delay_ms: u64,
    /// Fraction of receipts that report UNDELIV.
    #[serde(default)]
    pub fail_rate: f64,
    /// Never ready, like a carrier whose bind is down (failover demos and
    /// tests).
    #[serde(default)]
    pub offline: bool,
    /// How long the carrier takes to answer each submit (a slow
    /// submit_sm_resp), in milliseconds; 0 = at once.
    #[serde(default)]
    pub submit_delay_ms: u64,
}

impl SimConfig {
    /// A sim connector named `name` with every default.
    pub fn named(name: &str) -> SimConfig {
        SimConfig {
            name: name.to_string(),
            window: default_window(),
            tps: 0,
            delay_ms: default_sim_delay_ms(),
            fail_rate: 0.0,
            offline: false,
            submit_delay_ms: 0,
        }
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    pub fn submit_delay(&self) -> Duration {
        Duration::from_millis(self.submit_delay_ms)
    }
}

/// `kind = "smpp"`: an SMPP 3.4 carrier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    pub name: String,
    /// Outstanding submit_sm per bind.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Submits per second across the connector (0 = no cap); the
    /// dispatcher enforces it, counting message parts.
    #[serde(default)]
    pub tps: u32,
    /// Carrier host.
    pub host: String,
    /// Carrier port.
    #[serde(default = "default_smpp_port")]
    pub port: u16,
    /// Bind credentials.
    pub system_id: String,
    #[serde(default)]
    pub password: Secret,
    /// Number of binds (sessions), each with its own window.
    #[serde(default = "one")]
    pub binds: usize,
    /// `"transceiver"` (default) or `"transmitter"` (plus one receiver bind
    /// for receipts and inbound messages).
    #[serde(default)]
    pub bind: BindMode,
    /// `system_type` sent with the bind; empty by default.
    #[serde(default)]
    pub system_type: String,
    /// Wrap the connection in TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of CA certificates trusted besides the bundled Mozilla roots
    /// (carriers often use a private CA).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Name checked against the carrier's certificate; default `host`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// How long messages are cut: `"udh"` (default) or `"sar"` TLVs.
    #[serde(default)]
    pub split: SplitMode,
    /// Idle time between enquire_link keep-alives.
    #[serde(default = "default_enquire_link", with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    /// Longest wait for any response (bind_resp, submit_sm_resp,
    /// enquire_link_resp) and for the TCP/TLS connect.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt (with jitter)...
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// ...up to this, while the SMSC cannot be reached or drops the link.
    /// Short, so the first submit follows within about this long once the
    /// SMSC is back; a connect to a host that is down costs it nothing.
    /// Binds the SMSC refuses back off further (see the connector).
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How long a bind stops submitting after ESME_RTHROTTLED or
    /// ESME_RMSGQFUL.
    #[serde(default = "default_throttle_pause", with = "humantime_serde")]
    pub throttle_pause: Duration,
    /// Sender used when a message has no `from`; empty lets the carrier
    /// decide.
    #[serde(default)]
    pub source_addr: String,
    /// Type of number of the sender; default derived from its form (1
    /// international for `+digits`, 5 alphanumeric, else 0 unknown).
    #[serde(default)]
    pub source_ton: Option<u8>,
    /// Numbering plan of the sender; default 1 (ISDN) for numbers, 0 for
    /// alphanumeric senders.
    #[serde(default)]
    pub source_npi: Option<u8>,
}

/// TLS towards an SMPP carrier.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Name the certificate must carry.
    pub server_name: String,
    /// Extra trusted CA certificates (PEM), besides the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

impl SmppConfig {
    /// TLS settings when `tls` is on (the server name defaults to `host`).
    pub fn tls(&self) -> Option<TlsSettings> {
        self.tls.then(|| TlsSettings {
            server_name: self
                .tls_server_name
                .clone()
                .unwrap_or_else(|| self.host.clone()),
            ca_file: self.tls_ca.clone(),
        })
    }

    /// `host:port`, for connecting and for logs.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Checks what serde cannot: lengths, ranges and combinations.
    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return Err(invalid(key("host"), "must be a host name or IP address"));
        }
        if self.port == 0 {
            return Err(invalid(key("port"), "must be between 1 and 65535"));
        }
        // SMPP 3.4 §5.2: system_id is at most 15 characters, password 8, system_type 12.
        if self.system_id.is_empty() || self.system_id.len() > 15 || !self.system_id.is_ascii() {
            return Err(invalid(
                key("system_id"),
                "must be 1 to 15 ASCII characters",
            ));
        }
        let password = self.password.expose();
        if password.len() > 8 || !password.is_ascii() {
            return Err(invalid(
                key("password"),
                "must be at most 8 ASCII characters",
            ));
        }
        if self.system_type.len() > 12 || !self.system_type.is_ascii() {
            return Err(invalid(
                key("system_type"),
                "must be at most 12 ASCII characters",
            ));
        }
        if !(1..=64).contains(&self.binds) {
            return Err(invalid(key("binds"), "must be between 1 and 64"));
        }
        if !self.tls {
            for (field, set) in [
                ("tls_ca", self.tls_ca.is_some()),
                ("tls_server_name", self.tls_server_name.is_some()),
            ] {
                if set {
                    return Err(invalid(key(field), "needs tls = true"));
                }
            }
        }
        if let Some(ca) = &self.tls_ca
            && !ca.is_file()
        {
            return Err(invalid(
                key("tls_ca"),
                format!("{} is not a readable file", ca.display()),
            ));
        }
        if self.tls_server_name.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(key("tls_server_name"), "must not be empty"));
        }
        for (field, value, min) in [
            (
                "enquire_link_interval",
                self.enquire_link_interval,
                Duration::from_secs(1),
            ),
            (
                "response_timeout",
                self.response_timeout,
                Duration::from_millis(100),
            ),
            (
                "reconnect_min",
                self.reconnect_min,
                Duration::from_millis(10),
            ),
            (
                "reconnect_max",
                self.reconnect_max,
                Duration::from_millis(10),
            ),
            (
                "throttle_pause",
                self.throttle_pause,
                Duration::from_millis(1),
            ),
        ] {
            if value < min || value > Duration::from_secs(3600) {
                return Err(invalid(
                    key(field),
                    format!("must be between {} and 1h", humantime::format_duration(min)),
                ));
            }
        }
        if self.reconnect_min > self.reconnect_max {
            return Err(invalid(
                key("reconnect_min"),
                "must be at most reconnect_max",
            ));
        }
        if self.source_addr.len() > 20 || !self.source_addr.is_ascii() {
            return Err(invalid(
                key("source_addr"),
                "must be at most 20 ASCII characters",
            ));
        }
        for (field, value) in [
            ("source_ton", self.source_ton),
            ("source_npi", self.source_npi),
        ] {
            if value.is_some_and(|v| v > 18) {
                return Err(invalid(
                    key(field),
                    "must be an SMPP TON/NPI value (0 to 18)",
                ));
            }
        }
        Ok(())
    }
}

/// How an SMPP connector binds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// Each bind submits and receives (receipts, inbound).
    #[default]
    Transceiver,
    /// Each bind only submits; one extra receiver bind takes receipts and inbound.
    Transmitter,
}

/// How an SMPP connector marks the parts of a long message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// A concatenation user data header (8-bit reference) in each part, UDHI set.
    #[default]
    Udh,
    /// The sar_msg_ref_num, sar_total_segments and sar_segment_seqnum TLVs.
    Sar,
}

fn default_window() -> usize {
    64
}

fn default_sim_delay_ms() -> u64 {
    5
}

/// SMPP's well-known port.
pub const DEFAULT_SMPP_PORT: u16 = 2775;

fn default_smpp_port() -> u16 {
    DEFAULT_SMPP_PORT
}

fn one() -> usize {
    1
}

fn default_enquire_link() -> Duration {
    Duration::from_secs(30)
}

fn default_response_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_reconnect_min() -> Duration {
    Duration::from_millis(100)
}

fn default_reconnect_max() -> Duration {
    Duration::from_millis(500)
}

fn default_throttle_pause() -> Duration {
    Duration::from_secs(1)
}

/// `[scripts]`: operator scripts and templates (Rhai), and the bounds every
/// call runs under. A script over a bound is stopped, never the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    /// Off: no script or template is loaded (routing uses `routing.default`,
    /// requests with `template` get 422).
    pub enabled: bool,
    /// `route.rhai` and the hooks (`on_submit`, `on_inbound`, `cap_area`).
    pub dir: PathBuf,
    /// `NAME.rhai` and `NAME.LOCALE.rhai`.
    pub templates_dir: PathBuf,
    /// Reload changed files without a restart.
    pub watch: bool,
    /// Quiet time after the last change before reloading, so an editor's
    /// save (often several writes) is read once, complete.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Wall time one call may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Rhai operations one call may run (each is roughly one expression).
    pub max_operations: u64,
    /// Nested function calls (recursion) one call may make.
    pub max_call_depth: usize,
    /// Nesting of expressions in the source, checked when compiling.
    pub max_expr_depth: usize,
    /// Longest string a script may build, in bytes.
    pub max_string_bytes: usize,
    /// Most elements of an array a script may build.
    pub max_array_len: usize,
    /// Most properties of an object map a script may build.
    pub max_map_len: usize,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            enabled: true,
            dir: PathBuf::from("scripts"),
            templates_dir: PathBuf::from("templates"),
            watch: true,
            debounce: Duration::from_millis(250),
            timeout: Duration::from_millis(20),
            max_operations: 100_000,
            max_call_depth: 32,
            max_expr_depth: 64,
            max_string_bytes: 64 * 1024,
            max_array_len: 10_000,
            max_map_len: 1_000,
        }
    }
}

/// Largest `per_hour` / `per_day`: the history of each recipient holds up to
/// this many send times.
pub const MAX_LIMIT_COUNT: u32 = 10_000;

/// `[limits.<class>]`: per-recipient limits of each limited class (each
/// rule 0 = off). Emergency messages are never limited, so it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub otp: LimitPolicy,
    pub transactional: LimitPolicy,
    pub marketing: LimitPolicy,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            otp: LimitPolicy::default_for(Class::Otp),
            transactional: LimitPolicy::default_for(Class::Transactional),
            marketing: LimitPolicy::default_for(Class::Marketing),
        }
    }
}

impl LimitsConfig {
    /// The policy of `class`; `None` for emergency, which is never limited.
    pub fn for_class(&self, class: Class) -> Option<LimitPolicy> {
        match class {
            Class::Emergency => None,
            Class::Otp => Some(self.otp),
            Class::Transactional => Some(self.transactional),
            Class::Marketing => Some(self.marketing),
        }
    }
}

/// `[inbound]`: mobile-originated messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// Every inbound message is POSTed here (signed with `webhook_secret`).
    pub webhook_url: Option<String>,
    /// Signs inbound webhooks (Standard Webhooks `webhook-signature`):
    /// `whsec_` followed by the base64 of the HMAC key.
    pub webhook_secret: Option<Secret>,
    /// A message that is exactly one of these (any case) opts the sender out
    /// of marketing.
    pub stop_keywords: Vec<String>,
    /// … and one of these opts them back in.
    pub start_keywords: Vec<String>,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            webhook_url: None,
            webhook_secret: None,
            stop_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into()],
            start_keywords: vec!["START".into()],
        }
    }
}

/// `[webhooks]`: delivery of status callbacks and inbound webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Deliveries attempted at once.
    pub concurrency: usize,
    /// Deliveries attempted at once to one destination (scheme, host and
    /// port): a slow receiver holds at most this many of `concurrency`.
    pub per_destination: usize,
    /// One attempt may take this long.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First retry after this; doubles per attempt up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// A delivery still failing this long after its event is dropped.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Extra CA certificates (PEM) trusted for `https` receivers, besides
    /// the bundled Mozilla roots: for receivers with a private CA.
    pub tls_ca: Option<PathBuf>,
    /// Inside networks (loopback, private, link-local, …) webhooks may
    /// reach anyway, as addresses or CIDR blocks: e.g. `["10.20.0.0/16"]`
    /// for receivers on the operator's own network. Empty by default:
    /// webhooks go to public addresses only.
    pub allow_destinations: Vec<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            concurrency: 16,
            per_destination: 4,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            tls_ca: None,
            allow_destinations: Vec::new(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. "info" or "herald=debug,info". `RUST_LOG` wins.
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// Prefix of the variables that set one key of one `[[connectors]]` entry.
pub const CONNECTOR_ENV_PREFIX: &str = "HERALD__CONNECTORS__";

/// Whether a `HERALD__` key (prefix stripped) is about `connectors`.
fn is_connector_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "connectors" || lower.starts_with("connectors__")
}

/// Applies `HERALD__CONNECTORS__<SELECTOR>__<KEY>=value` variables from
/// `vars` to `connectors`. `SELECTOR` is an index (`0`, `1`, …: digits only)
/// or a connector name, matched ignoring case and treating `-` and `_` alike
/// (so `carrier-a` is `CARRIER_A`). `KEY` is a connector key (`TPS`,
/// `PASSWORD`, …); the value is read like any `HERALD__` value (`500`,
/// `true`, `"5s"`). Entries can be changed, not added.
///
/// # Errors
/// A variable naming no connector, or a value the key does not take, named
/// by variable and `connectors[i].key`.
pub fn apply_connector_env<K, V>(
    connectors: &mut [ConnectorConfig],
    vars: impl IntoIterator<Item = (K, V)>,
) -> Result<(), ConfigError>
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut overrides: Vec<(String, usize, String, String)> = Vec::new();
    for (k, v) in vars {
        let var = k.as_ref().to_string_lossy().into_owned();
        let upper = var.to_ascii_uppercase();
        if upper == "HERALD__CONNECTORS" {
            return Err(invalid(
                "connectors",
                "cannot be replaced from the environment; set one key of one entry with \
                 HERALD__CONNECTORS__<name or index>__<KEY>",
            ));
        }
        let Some(rest) = upper.strip_prefix(CONNECTOR_ENV_PREFIX) else {
            continue;
        };
        let rest = &var[var.len() - rest.len()..];
        let Some((selector, key)) = rest.split_once("__") else {
            return Err(invalid(
                var,
                "must be HERALD__CONNECTORS__<name or index>__<KEY>",
            ));
        };
        let index = connector_index(connectors, selector).ok_or_else(|| {
            invalid(
                var.clone(),
                format!(
                    "names no configured connector (\"{selector}\": an index or a connector name)"
                ),
            )
        })?;
        let key = key.to_ascii_lowercase().replace("__", ".");
        let value = v.as_ref().to_string_lossy().into_owned();
        overrides.push((var, index, key, value));
    }
    // Deterministic whatever the order of the environment.
    overrides.sort();
    for (var, index, key, value) in overrides {
        let current = &connectors[index];
        let parsed: figment::value::Value = value
            .parse()
            .unwrap_or_else(|never: std::convert::Infallible| match never {});
        let updated: ConnectorConfig = Figment::from(Serialized::defaults(current))
            .merge(Serialized::default(&key, parsed))
            .extract()
            .map_err(|e| {
                invalid(
                    format!("connectors[{index}].{key} (from {var})"),
                    e.kind.to_string(),
                )
            })?;
        connectors[index] = updated;
    }
    Ok(())
}

/// The connector `selector` names: digits are an index, anything else a
/// name (case-insensitive, `-` and `_` alike).
fn connector_index(connectors: &[ConnectorConfig], selector: &str) -> Option<usize> {
    if !selector.is_empty() && selector.bytes().all(|b| b.is_ascii_digit()) {
        return selector
            .parse::<usize>()
            .ok()
            .filter(|i| *i < connectors.len());
    }
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let wanted = norm(selector);
    let mut found = connectors
        .iter()
        .enumerate()
        .filter(|(_, c)| norm(c.name()) == wanted);
    match (found.next(), found.next()) {
        (Some((i, _)), None) => Some(i),
        // Two names that differ only by case or '-'/'_': address by index.
        _ => None,
    }
}

impl Config {
    /// Loads defaults, then `path` (which must exist when given explicitly),
    /// then `HERALD__…` environment overrides, and validates the result.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending key.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Missing(p.to_path_buf()));
                }
                figment = figment.merge(Toml::file_exact(p));
            }
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        // `[[connectors]]` is an array: figment cannot address its entries
        // from the environment, so those variables are applied by name or
        // index after extraction (see `apply_connector_env`).
        let env = Env::prefixed("HERALD__")
            .filter(|k| !is_connector_key(k.as_str()))
            .split("__");
        let mut config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        apply_connector_env(&mut config.connectors, std::env::vars_os())?;
        config.validate()?;
        Ok(config)
    }

    /// Builds a config from TOML text alone (tests and the benchmark).
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
        )
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        // Arrays replace, not merge: a file that lists connectors means exactly those.
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        self.otp
            .validate()
            .map_err(|(key, problem)| invalid(key, problem))?;
        crate::senders::SenderPatterns::parse(&self.senders.reserved)
            .map_err(|problem| invalid("senders.reserved", problem))?;
        if self.retention.messages < self.messages.idempotency_ttl {
            return Err(invalid(
                "retention.messages",
                "must be at least messages.idempotency_ttl (a key must not outlive its message)",
            ));
        }
        for (key, d) in [
            ("retention.messages", self.retention.messages),
            ("retention.inbound", self.retention.inbound),
            ("retention.receipts", self.retention.receipts),
        ] {
            if d < Duration::from_secs(60) {
                return Err(invalid(key, "must be at least 1m"));
            }
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        if self.http.max_batch_body_bytes < self.http.max_body_bytes {
            return Err(invalid(
                "http.max_batch_body_bytes",
                "must be at least http.max_body_bytes",
            ));
        }
        if self.http.max_batch_bytes_in_flight < self.http.max_batch_body_bytes {
            return Err(invalid(
                "http.max_batch_bytes_in_flight",
                "must be at least http.max_batch_body_bytes (or no largest batch could ever run)",
            ));
        }
        if self.http.max_concurrent_requests == 0 {
            return Err(invalid("http.max_concurrent_requests", "must be above 0"));
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be above 0"));
        }
        if self.http.header_read_timeout < Duration::from_millis(100) {
            return Err(invalid(
                "http.header_read_timeout",
                "must be at least 100ms",
            ));
        }
        match self.store.kind {
            StoreKind::Embedded => {
                if self.store.path.as_os_str().is_empty() {
                    return Err(invalid("store.path", "must not be empty"));
                }
                if self.store.cache_mb == 0 {
                    return Err(invalid("store.cache_mb", "must be above 0"));
                }
            }
            StoreKind::Redis => self.validate_redis()?,
        }
        if !(1..=255).contains(&self.messages.max_segments) {
            return Err(invalid(
                "messages.max_segments",
                "must be between 1 and 255",
            ));
        }
        if !self.messages.default_region.is_empty()
            && self
                .messages
                .default_region
                .parse::<phonenumber::country::Id>()
                .is_err()
        {
            return Err(invalid(
                "messages.default_region",
                format!(
                    "\"{}\" is not an ISO 3166 region code like \"GB\"",
                    self.messages.default_region
                ),
            ));
        }
        for class in Class::ALL {
            let v = self.messages.validity.for_class(class);
            if v.is_zero() || v > self.messages.max_validity {
                return Err(invalid(
                    format!("messages.validity.{}", class.as_str()),
                    "must be above 0 and at most messages.max_validity",
                ));
            }
        }
        if self.dispatch.max_attempts == 0 {
            return Err(invalid("dispatch.max_attempts", "must be at least 1"));
        }
        if self.dispatch.retry_base.is_zero() || self.dispatch.retry_max < self.dispatch.retry_base
        {
            return Err(invalid(
                "dispatch.retry_base",
                "must be above 0 and at most dispatch.retry_max",
            ));
        }
        if self.dispatch.failover_after < Duration::from_millis(100) {
            return Err(invalid("dispatch.failover_after", "must be at least 100ms"));
        }
        self.validate_connectors()?;
        self.validate_scripts()?;
        for (class, limit) in [
            ("otp", &self.limits.otp),
            ("transactional", &self.limits.transactional),
            ("marketing", &self.limits.marketing),
        ] {
            // Each allowed send is remembered per recipient until it ages out.
            for (field, value) in [("per_hour", limit.per_hour), ("per_day", limit.per_day)] {
                if value > MAX_LIMIT_COUNT {
                    return Err(invalid(
                        format!("limits.{class}.{field}"),
                        format!("must be at most {MAX_LIMIT_COUNT}"),
                    ));
                }
            }
            if limit.min_interval_seconds > 86_400 {
                return Err(invalid(
                    format!("limits.{class}.min_interval_seconds"),
                    "must be at most 86400 (a day)",
                ));
            }
        }
        if let Some(url) = &self.inbound.webhook_url
            && reqwest::Url::parse(url)
                .map(|u| !matches!(u.scheme(), "http" | "https"))
                .unwrap_or(true)
        {
            return Err(invalid("inbound.webhook_url", "must be an http(s) URL"));
        }
        if self.inbound.webhook_url.is_some() && self.inbound.webhook_secret.is_none() {
            return Err(invalid(
                "inbound.webhook_secret",
                "is required when inbound.webhook_url is set (inbound webhooks are always signed)",
            ));
        }
        if let Some(secret) = &self.inbound.webhook_secret
            && let Err(e) = crate::webhook::signature::SigningKey::from_secret(secret.expose())
        {
            return Err(invalid("inbound.webhook_secret", e.to_string()));
        }
        if self.webhooks.concurrency == 0 || self.webhooks.concurrency > 1024 {
            return Err(invalid(
                "webhooks.concurrency",
                "must be between 1 and 1024",
            ));
        }
        if self.webhooks.per_destination == 0
            || self.webhooks.per_destination > self.webhooks.concurrency
        {
            return Err(invalid(
                "webhooks.per_destination",
                "must be between 1 and webhooks.concurrency",
            ));
        }
        if self.webhooks.retry_base.is_zero() || self.webhooks.retry_max < self.webhooks.retry_base
        {
            return Err(invalid(
                "webhooks.retry_base",
                "must be above 0 and at most webhooks.retry_max",
            ));
        }
        let policy =
            crate::webhook::destination::DestinationPolicy::new(&self.webhooks.allow_destinations)
                .map_err(|e| invalid("webhooks.allow_destinations", e))?;
        if let Some(url) = &self.inbound.webhook_url
            && let Ok(url) = reqwest::Url::parse(url)
            && let Err(e) = policy.check_literal(&url)
        {
            return Err(invalid("inbound.webhook_url", e.to_string()));
        }
        if let Some(ca) = &self.webhooks.tls_ca
            && !ca.is_file()
        {
            return Err(invalid(
                "webhooks.tls_ca",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        Ok(())
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        let Some(url) = self.store.url.as_ref().map(Secret::expose) else {
            return Err(invalid(
                "store.url",
                "is required with store.kind = \"redis\" (e.g. \"redis://127.0.0.1:6379/0\")",
            ));
        };
        if !(url.starts_with("redis://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            return Err(invalid(
                "store.url",
                "must be a redis://host:port/db or redis+unix:///path URL (TLS is not supported)",
            ));
        }
        let word = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c)
                })
        };
        if !word(&self.store.prefix, &[]) {
            return Err(invalid(
                "store.prefix",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some(node) = &self.store.node_id
            && !word(node, &[':'])
        {
            return Err(invalid(
                "store.node_id",
                "must be 1 to 64 letters, digits, '-', '_', '.' or ':'",
            ));
        }
        if self.store.lease_timeout < Duration::from_secs(1)
            || self.store.lease_timeout > Duration::from_secs(3600)
        {
            return Err(invalid("store.lease_timeout", "must be between 1s and 1h"));
        }
        Ok(())
    }

    fn validate_connectors(&self) -> Result<(), ConfigError> {
        if self.connectors.is_empty() {
            return Err(invalid("connectors", "must list at least one connector"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.connectors.iter().enumerate() {
            let key = |field: &str| format!("connectors[{i}].{field}");
            let name = c.name();
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !name_ok {
                return Err(invalid(
                    key("name"),
                    "must be 1 to 64 letters, digits, '-' or '_'",
                ));
            }
            if !seen.insert(name) {
                return Err(invalid(
                    key("name"),
                    format!("\"{name}\" is used by two connectors"),
                ));
            }
            if c.window() == 0 || c.window() > 10_000 {
                return Err(invalid(key("window"), "must be between 1 and 10000"));
            }
            match c {
                ConnectorConfig::Sim(sim) => {
                    if !(0.0..=1.0).contains(&sim.fail_rate) {
                        return Err(invalid(key("fail_rate"), "must be between 0.0 and 1.0"));
                    }
                    if sim.delay_ms > 3_600_000 {
                        return Err(invalid(key("delay_ms"), "must be at most 3600000"));
                    }
                    if sim.submit_delay_ms > 600_000 {
                        return Err(invalid(key("submit_delay_ms"), "must be at most 600000"));
                    }
                }
                ConnectorConfig::Smpp(smpp) => smpp.validate(&key)?,
            }
        }
        let names: Vec<&str> = self.connectors.iter().map(ConnectorConfig::name).collect();
        for (i, name) in self.routing.default.iter().enumerate() {
            if !names.contains(&name.as_str()) {
                return Err(invalid(
                    format!("routing.default[{i}]"),
                    format!("names no configured connector (\"{name}\")"),
                ));
            }
        }
        Ok(())
    }

    fn validate_scripts(&self) -> Result<(), ConfigError> {
        let s = &self.scripts;
        if s.timeout.is_zero() || s.timeout > Duration::from_secs(10) {
            return Err(invalid(
                "scripts.timeout",
                "must be above 0 and at most 10s",
            ));
        }
        if s.debounce > Duration::from_secs(60) {
            return Err(invalid("scripts.debounce", "must be at most 60s"));
        }
        let ranges: [(&str, u64, u64, u64); 6] = [
            (
                "scripts.max_operations",
                s.max_operations,
                1_000,
                1_000_000_000,
            ),
            // Each Rhai call level takes native stack; 64 is what Rhai
            // itself allows in release builds.
            ("scripts.max_call_depth", s.max_call_depth as u64, 1, 64),
            ("scripts.max_expr_depth", s.max_expr_depth as u64, 8, 256),
            (
                "scripts.max_string_bytes",
                s.max_string_bytes as u64,
                1_024,
                16 << 20,
            ),
            (
                "scripts.max_array_len",
                s.max_array_len as u64,
                16,
                1_000_000,
            ),
            ("scripts.max_map_len", s.max_map_len as u64, 16, 1_000_000),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(invalid(key, format!("must be between {min} and {max}")));
            }
        }
        Ok(())
    }

    /// The default route: `routing.default`, or the first connector.
    pub fn default_route(&self) -> Vec<String> {
        if self.routing.default.is_empty() {
            self.connectors
                .first()
                .map(|c| vec![c.name().to_string()])
                .unwrap_or_default()
        } else {
            self.routing.default.clone()
        }
    }

    /// The configured default region for national-format numbers.
    /// The OTP seal key file: configured, or `seal.key` next to the database.
    pub fn seal_key_path(&self) -> std::path::PathBuf {
        self.otp
            .seal_key_file
            .clone()
            .unwrap_or_else(|| self.store.path.with_file_name("seal.key"))
    }

    pub fn default_region(&self) -> Option<phonenumber::country::Id> {
        if self.messages.default_region.is_empty() {
            None
        } else {
            self.messages.default_region.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_serve_on_loopback() {
        let c = Config::from_toml("").expect("defaults");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.default_route(), vec!["sim".to_string()]);
    }

    #[test]
    fn shipped_config_is_valid() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH),
        )
        .expect("shipped config");
        Config::from_toml(&text).expect("shipped config parses");
    }

    #[test]
    fn the_commented_smpp_example_in_the_shipped_config_is_valid() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH),
        )
        .expect("shipped config");
        let start = text
            .find("# [[connectors]]")
            .expect("commented smpp example");
        let example: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim_start())
            // TLS options need tls = true and an existing CA file.
            .filter(|l| !l.starts_with("tls_"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(example.contains("kind = \"smpp\""), "{example}");
        let c = Config::from_toml(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
        assert_eq!(c.connectors[0].name(), "carrier-a");
    }

    #[test]
    fn webhook_destinations_are_checked_at_load() {
        let err = Config::from_toml("[webhooks]\nallow_destinations = [\"intranet\"]\n")
            .expect_err("not an address");
        assert!(
            err.to_string().contains("webhooks.allow_destinations"),
            "{err}"
        );
        let inside = "[inbound]\nwebhook_url = \"http://10.1.2.3/mo\"\nwebhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
        let err = Config::from_toml(inside).expect_err("a private address");
        assert!(err.to_string().contains("inbound.webhook_url"), "{err}");
        let allowed = format!("{inside}[webhooks]\nallow_destinations = [\"10.1.0.0/16\"]\n");
        Config::from_toml(&allowed).expect("allowed explicitly");
    }

    #[test]
    fn an_inbound_webhook_without_a_secret_is_refused_naming_the_key() {
        let err = Config::from_toml("[inbound]\nwebhook_url = \"https://example.com/mo\"\n")
            .expect_err("unsigned inbound webhooks are refused");
        assert!(err.to_string().contains("inbound.webhook_secret"), "{err}");
        let err = Config::from_toml(
            "[inbound]\nwebhook_url = \"https://example.com/mo\"\nwebhook_secret = \" \"\n",
        )
        .expect_err("an empty secret signs nothing");
        assert!(err.to_string().contains("inbound.webhook_secret"), "{err}");
        let err = Config::from_toml(
            "[inbound]\nwebhook_url = \"https://example.com/mo\"\nwebhook_secret = \"whsec_x\"\n",
        )
        .expect_err("not a base64 key");
        assert!(err.to_string().contains("inbound.webhook_secret"), "{err}");
        Config::from_toml(
            "[inbound]\nwebhook_url = \"https://example.com/mo\"\n\
             webhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        )
        .expect("signed inbound webhooks are fine");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[http]\nlisen = \"x\"").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::from_toml("[messages]\nmax_segments = \"ten\"").unwrap_err();
        assert!(err.to_string().contains("messages.max_segments"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = Config::from_toml("[dispatch]\nretry_base = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("dispatch.retry_base"), "{err}");
    }

    #[test]
    fn duplicate_connector_names_are_refused() {
        let err = Config::from_toml(
            "[[connectors]]\nname = \"a\"\nkind = \"sim\"\n[[connectors]]\nname = \"a\"\nkind = \"sim\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("connectors[1].name"), "{err}");
    }

    #[test]
    fn sim_connector_refuses_smpp_fields() {
        let err = Config::from_toml("[[connectors]]\nname = \"a\"\nkind = \"sim\"\nport = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`port`") && err.contains("connectors.0"),
            "{err}"
        );
        // And the other way round.
        let err = Config::from_toml(&format!("{SMPP}delay_ms = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`delay_ms`") && err.contains("connectors.0"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Config::from_toml(&format!(
            "{SMPP}password = \"hunter2\"\n[inbound]\nwebhook_url = \"https://example.com/mo\"\n\
             webhook_secret = \"whsec_dG9wc2VjcmV0dG9wc2VjcmV0dG9wc2VjcmV0\"\n"
        ))
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("dG9wc2VjcmV0"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let smpp = c.connectors[0].as_smpp().expect("smpp");
        assert_eq!(smpp.password.expose(), "hunter2");
    }

    #[test]
    fn limits_are_keyed_by_class_and_keep_unset_defaults() {
        let c = Config::from_toml("[limits.otp]\nper_hour = 10\n").expect("valid");
        assert_eq!(c.limits.otp.per_hour, 10);
        assert_eq!(c.limits.otp.min_interval_seconds, 30, "the default stays");
        assert_eq!(
            c.limits.for_class(Class::Marketing).map(|p| p.per_day),
            Some(2)
        );
        assert_eq!(c.limits.for_class(Class::Emergency), None);
        // Emergency messages are never limited: there is nothing to set.
        let err = Config::from_toml("[limits.emergency]\nper_hour = 1").unwrap_err();
        assert!(err.to_string().contains("emergency"), "{err}");
    }

    const SMPP: &str = "[[connectors]]\nname = \"c\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nsystem_id = \"herald\"\n";

    #[test]
    fn a_minimal_smpp_connector_is_valid() {
        let c = Config::from_toml(SMPP).expect("valid");
        assert_eq!(c.connectors[0].kind(), "smpp");
    }

    #[test]
    fn smpp_connector_needs_a_host_and_a_system_id() {
        let err = Config::from_toml("[[connectors]]\nname = \"c\"\nkind = \"smpp\"\n").unwrap_err();
        assert!(err.to_string().contains("`host`"), "{err}");
        let err =
            Config::from_toml("[[connectors]]\nname = \"c\"\nkind = \"smpp\"\nhost = \"h\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("`system_id`"), "{err}");
    }

    #[test]
    fn smpp_field_problems_name_the_field() {
        for (extra, field) in [
            ("password = \"123456789\"", "password"),
            ("binds = 0", "binds"),
            ("split = \"both\"", "split"),
            ("bind = \"receiver\"", "bind"),
            ("tls_ca = \"/nonexistent.pem\"", "tls_ca"),
            ("enquire_link_interval = \"10ms\"", "enquire_link_interval"),
            (
                "reconnect_min = \"10s\"\nreconnect_max = \"1s\"",
                "reconnect_min",
            ),
            (
                "source_addr = \"this-sender-is-far-too-long\"",
                "source_addr",
            ),
            ("delay_ms = 5", "delay_ms"),
        ] {
            let err = Config::from_toml(&format!("{SMPP}{extra}\n")).unwrap_err();
            assert!(err.to_string().contains(field), "{extra}: {err}");
        }
    }

    #[test]
    fn every_smpp_key_parses() {
        let c = Config::from_toml(&format!(
            "{SMPP}port = 2776\npassword = \"pw\"\nbinds = 2\nbind = \"transmitter\"\n\
             system_type = \"x\"\ntls = true\ntls_server_name = \"smsc\"\nsplit = \"sar\"\n\
             enquire_link_interval = \"15s\"\nresponse_timeout = \"5s\"\nreconnect_min = \"1s\"\n\
             reconnect_max = \"1m\"\nthrottle_pause = \"500ms\"\nsource_addr = \"Herald\"\n\
             source_ton = 5\nsource_npi = 0\n"
        ))
        .expect("valid");
        let s = c.connectors[0].as_smpp().expect("smpp");
        assert_eq!(s.split, SplitMode::Sar);
        assert_eq!(s.bind, BindMode::Transmitter);
        assert_eq!(s.throttle_pause, Duration::from_millis(500));
    }

    #[test]
    fn tls_options_need_tls() {
        let err = Config::from_toml(&format!("{SMPP}tls_server_name = \"x\"\n")).unwrap_err();
        assert!(err.to_string().contains("tls_server_name"), "{err}");
    }

    #[test]
    fn unknown_default_route_is_refused() {
        let err = Config::from_toml("[routing]\ndefault = [\"nope\"]").unwrap_err();
        assert!(err.to_string().contains("routing.default[0]"), "{err}");
    }

    #[test]
    fn limits_for_unknown_class_are_refused() {
        let err = Config::from_toml("[limits.spam]\nper_hour = 1").unwrap_err();
        assert!(err.to_string().contains("limits.spam"), "{err}");
    }

    #[test]
    fn script_bounds_are_checked() {
        let err = Config::from_toml("[scripts]\nmax_call_depth = 1000").unwrap_err();
        assert!(err.to_string().contains("scripts.max_call_depth"), "{err}");
        let err = Config::from_toml("[scripts]\ntimeout = \"0s\"").unwrap_err();
        assert!(err.to_string().contains("scripts.timeout"), "{err}");
    }

    const TWO: &str = "[[connectors]]\nname = \"carrier-a\"\nkind = \"smpp\"\nhost = \"10.0.0.1\"\n\
                       system_id = \"herald\"\nresponse_timeout = \"5s\"\n\
                       [[connectors]]\nname = \"sim\"\nkind = \"sim\"\n";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn connector_keys_are_overridden_by_name_or_index() {
        let mut c = Config::from_toml(TWO).expect("valid");
        apply_connector_env(
            &mut c.connectors,
            env(&[
                ("HERALD__CONNECTORS__CARRIER_A__PASSWORD", "s3cret"),
                ("HERALD__CONNECTORS__carrier-a__TPS", "250"),
                ("HERALD__CONNECTORS__1__OFFLINE", "true"),
                ("HERALD__CONNECTORS__SIM__DELAY_MS", "40"),
                ("HERALD__HTTP__LISTEN", "0.0.0.0:1"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("applied");
        let a = c.connectors[0].as_smpp().expect("still smpp");
        assert_eq!(a.password.expose(), "s3cret");
        assert_eq!(a.tps, 250);
        // Untouched keys survive the round trip.
        assert_eq!(a.response_timeout, Duration::from_secs(5));
        assert_eq!(a.host, "10.0.0.1");
        let ConnectorConfig::Sim(sim) = &c.connectors[1] else {
            panic!("still sim");
        };
        assert!(sim.offline);
        assert_eq!(sim.delay_ms, 40);
        c.validate().expect("still valid");
    }

    #[test]
    fn an_untouched_connector_round_trips_unchanged() {
        let c = Config::from_toml(&format!(
            "{SMPP}port = 2776\npassword = \"pw\"\nbinds = 2\nbind = \"transmitter\"\n\
             split = \"sar\"\nenquire_link_interval = \"15s\"\nthrottle_pause = \"500ms\"\n\
             source_ton = 5\n"
        ))
        .expect("valid");
        let mut changed = c.connectors.clone();
        apply_connector_env(
            &mut changed,
            env(&[("HERALD__CONNECTORS__0__WINDOW", "64")]),
        )
        .expect("applied");
        let json = |x: &ConnectorConfig| serde_json::to_value(x).expect("json");
        assert_eq!(json(&changed[0]), json(&c.connectors[0]));
    }

    #[test]
    fn connector_overrides_that_do_not_apply_name_the_variable() {
        let c = Config::from_toml(TWO).expect("valid");
        for (var, value, named) in [
            (
                "HERALD__CONNECTORS__NOPE__TPS",
                "1",
                "HERALD__CONNECTORS__NOPE__TPS",
            ),
            (
                "HERALD__CONNECTORS__7__TPS",
                "1",
                "HERALD__CONNECTORS__7__TPS",
            ),
            ("HERALD__CONNECTORS__SIM__TPS", "fast", "connectors[1].tps"),
            ("HERALD__CONNECTORS__SIM__TSP", "1", "connectors[1].tsp"),
            ("HERALD__CONNECTORS__SIM", "1", "HERALD__CONNECTORS__SIM"),
            ("HERALD__CONNECTORS", "[]", "connectors"),
        ] {
            let mut connectors = c.connectors.clone();
            let err = apply_connector_env(&mut connectors, env(&[(var, value)]))
                .expect_err(var)
                .to_string();
            assert!(err.contains(named), "{var}: {err}");
        }
    }

    #[test]
    fn connector_variables_are_kept_away_from_the_other_keys() {
        assert!(is_connector_key("connectors__sim__tps"));
        assert!(is_connector_key("CONNECTORS"));
        assert!(!is_connector_key("http__listen"));
        assert!(!is_connector_key("connectorsx"));
    }

    #[test]
    fn bad_region_is_refused() {
        let err = Config::from_toml("[messages]\ndefault_region = \"XX1\"").unwrap_err();
        assert!(err.to_string().contains("messages.default_region"), "{err}");
    }

    #[test]
    fn redis_store_needs_a_redis_url() {
        let err = Config::from_toml("[store]\nkind = \"redis\"").unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
        let err = Config::from_toml("[store]\nkind = \"redis\"\nurl = \"http://x\"").unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
        let ok = Config::from_toml(
            "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nnode_id = \"a:8080\"",
        )
        .expect("valid");
        assert_eq!(ok.store.prefix, "herald");
        assert_eq!(ok.store.lease_timeout, Duration::from_secs(10));
    }

    #[test]
    fn redis_names_and_lease_are_checked() {
        let base = "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\n";
        for (extra, key) in [
            ("prefix = \"a b\"", "store.prefix"),
            ("prefix = \"{x}\"", "store.prefix"),
            ("node_id = \"\"", "store.node_id"),
            ("lease_timeout = \"100ms\"", "store.lease_timeout"),
        ] {
            let err = Config::from_toml(&format!("{base}{extra}")).unwrap_err();
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn retention_is_read_and_may_not_drop_messages_before_their_idempotency_keys() {
        let c =
            Config::from_toml("[retention]\nmessages = \"40d\"\ninbound = \"2d\"").expect("config");
        let r = c.retention();
        assert_eq!(r.messages, Duration::from_secs(40 * 86_400));
        assert_eq!(r.inbound, Duration::from_secs(2 * 86_400));
        assert_eq!(r.receipts, Duration::from_secs(3600));
        assert_eq!(r.idempotency, c.messages.idempotency_ttl);
        let err = Config::from_toml("[retention]\nmessages = \"1h\"").unwrap_err();
        assert!(err.to_string().contains("retention.messages"), "{err}");
    }

    #[test]
    fn limits_are_bounded() {
        let err = Config::from_toml("[limits.otp]\nper_day = 1000000").unwrap_err();
        assert!(err.to_string().contains("limits.otp.per_day"), "{err}");
    }
}
