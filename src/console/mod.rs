//! The emergency broadcast console at `/console`: server-rendered pages
//! for operators (login, groups, compose, approval, progress), an edge
//! layer like [`crate::api`] that calls the same domain code.

pub mod config;
