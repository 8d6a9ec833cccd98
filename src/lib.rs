//! Herald: an SMS gateway for the messages that must not wait.
//!
//! Module map (see `DESIGN.md`):
//! - [`config`]: layered configuration with validation.
//! - [`model`]: messages, classes, statuses, ids.
//! - [`text`]: phone numbers, GSM 03.38 / UCS-2 encoding and segments.
//! - [`admission`]: request → validated, durably stored message.
//! - [`store`]: the `Store` trait and the embedded (redb) store.
//! - [`dispatch`]: strict-priority submit loop, retries, receipts, maintenance.
//! - [`connector`]: the `Connector` trait and the simulated carrier.
//! - [`api`]: the HTTP API, auth, errors, OpenAPI.
//! - [`server`]: wiring for `herald serve`; [`admin`]: CLI admin commands.
//! - [`smsc_sim`]: the standalone SMPP 3.4 SMSC simulator (`herald smsc-sim`).
//! - [`bench`]: the benchmark suite (`herald bench`).
//! - [`script`]: operator scripts and templates (Rhai), sandboxed and hot-reloaded.
//! - [`metrics`]: Prometheus metrics.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod api;
pub mod auth;
pub mod bench;
pub mod config;
pub mod connector;
pub mod dispatch;
pub mod error;
pub mod inbound;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod recorder;
pub mod script;
pub mod server;
pub mod smsc_sim;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod view;
pub mod webhook;

#[cfg(test)]
pub(crate) mod test_support;
