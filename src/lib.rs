//! Herald: an SMS gateway for the messages that must not wait.
pub mod smsc_sim;
