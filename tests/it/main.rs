//! Integration tests: one binary, real servers on free loopback ports.

mod helpers;

mod api_errors;
mod api_messages;
mod cli;
mod crash;
mod dispatch;
mod inbound;
mod limits;
mod openapi;
mod priority;
mod scripts;
mod store_conformance;
mod webhooks;
