//! Integration tests: one binary, real servers on free loopback ports.

mod helpers;

mod api_errors;
mod api_messages;
mod audit;
mod broadcasts;
mod cap;
mod cli;
mod connections;
mod console;
mod crash;
mod dispatch;
mod files;
mod groups;
mod inbound;
mod interop;
mod limits;
mod openapi;
mod otp;
mod priority;
mod redis_gateway;
mod redis_store;
mod scripts;
mod smpp;
mod smpp_faults;
mod store_conformance;
mod supervision;
mod tenancy;
mod test_command;
mod webhooks;
