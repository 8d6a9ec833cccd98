//! Herald: an SMS gateway for the messages that must not wait.
//!
//! **Layering, in one sentence:** the message path (everything below the
//! line) never imports the HTTP layer; `api` translates requests into domain
//! calls and domain errors into responses in one place, and only `server`,
//! `admin`, `bench` and the binary wire the layers together.
//!
//! Edge and wiring:
//! - [`api`]: the HTTP API — routes, the Bearer extractor, the one
//!   error → JSON mapping, OpenAPI.
//! - [`console`]: the operator console at `/console` — server-rendered
//!   pages over the same domain code (broadcasts, groups), session cookies,
//!   CSRF; [`operator`]: its accounts, login lockout and sessions.
//! - [`server`]: `herald serve` builds and stops everything, serving HTTP
//!   through [`listener`] (connection cap, header-read timeout); [`admin`]: CLI
//!   admin commands (directly or over the admin socket); [`bench`]: `herald
//!   bench`; [`smsc_sim`]: the standalone SMSC simulator.
//!
//! ---- the message path ----
//! - [`auth`]: principals, scopes, API keys and their verification;
//!   [`senders`]: the sender ids each key may use.
//! - [`admission`]: a message to send → validated, rendered, routed and
//!   durably stored, or an [`admission::AdmissionError`]; used by the API
//!   and by internal senders (inbound auto-replies, OTP).
//! - [`otp`]: one-time passwords — codes, their hashes, attempts, the
//!   SMS-pumping defence; [`seal`]: secret message text kept sealed until
//!   submit; [`group`]: recipient groups (names, uploads).
//! - [`broadcast`]: broadcasts — approval, exercise vs live, cancel,
//!   progress, and the fan-out that turns audiences into queued messages.
//! - [`cap`]: OASIS CAP 1.2 alerts parsed and validated (hardened XML, no
//!   DTDs) for emergency broadcasts.
//! - [`audit`]: the append-only log of who did what, when, with what outcome.
//! - [`inbound`]: mobile-originated messages, STOP/START, `on_inbound`.
//! - [`dispatch`]: the strict-priority submit loop per connector;
//!   [`recorder`]: outcomes, receipts and inbound messages written in
//!   batches; [`maintenance`]: retries due, expiry, purges; [`supervise`]:
//!   long-running tasks restarted or stopping the gateway on a panic.
//! - [`webhook`]: signed (Standard Webhooks), retried callback and inbound
//!   deliveries, never to inside addresses, capped per destination.
//! - [`connector`]: the `Connector` trait, the simulated carrier and SMPP.
//! - [`script`]: operator scripts and templates (Rhai), sandboxed and
//!   hot-reloaded.
//! - [`store`]: the role traits (`MessageStore`, `KeyStore`,
//!   `InboundStore`, `WebhookStore`, `OtpStore`, `GroupStore`,
//!   `OperatorStore`, `BroadcastStore`, `AuditStore`) and their embedded
//!   (redb) and Redis implementations.
//! - [`limits`]: the per-recipient limit algorithm.
//! - [`view`]: the JSON views the API answers and webhooks POST.
//! - [`model`]: messages, classes, statuses, ids, receipts; [`text`]: phone
//!   numbers, GSM 03.38 / UCS-2 encoding and segments; [`error`]: the
//!   field error shared by domain modules; [`config`]: layered
//!   configuration; [`metrics`], [`telemetry`]; [`testing`]: bounded
//!   waits for tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod api;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod broadcast;
pub mod cap;
pub mod config;
pub mod connector;
pub mod console;
pub mod dispatch;
pub mod error;
pub mod group;
pub mod inbound;
pub mod limits;
pub mod listener;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod operator;
pub mod otp;
pub mod recorder;
pub mod script;
pub mod seal;
pub mod senders;
pub mod server;
pub mod smsc_sim;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod testing;
pub mod text;
pub mod view;
pub mod webhook;

#[cfg(test)]
pub(crate) mod test_support;
