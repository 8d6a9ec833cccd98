//! `[console]`: how console logins and sessions are limited and whether
//! the session cookie is marked `Secure`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::operator::SessionPolicy;

/// `[console]` of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Mark the session cookie `Secure` (sent over HTTPS only). Unset: on,
    /// unless the HTTP listener is on a loopback address (then the console
    /// is reached over plain HTTP on the same machine, or through a TLS
    /// proxy that sets it itself).
    pub secure_cookies: Option<bool>,
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after login, however busy.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Wrong passwords in a row before an account is locked.
    pub max_failed_logins: u32,
    /// How long such a lock lasts.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            secure_cookies: None,
            idle_timeout: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
            max_failed_logins: 5,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

impl ConsoleConfig {
    /// Whether the cookie gets `Secure` when the API listens on `listen`.
    pub fn secure(&self, listen: SocketAddr) -> bool {
        self.secure_cookies
            .unwrap_or_else(|| !listen.ip().is_loopback())
    }

    /// The login and session limits.
    pub fn policy(&self) -> SessionPolicy {
        SessionPolicy {
            max_failures: self.max_failed_logins.max(1),
            lockout: self.lockout,
            idle: self.idle_timeout,
            absolute: self.session_lifetime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_unless_on_loopback_or_configured() {
        let c = ConsoleConfig::default();
        assert!(!c.secure("127.0.0.1:8080".parse().expect("addr")));
        assert!(!c.secure("[::1]:8080".parse().expect("addr")));
        assert!(c.secure("0.0.0.0:8080".parse().expect("addr")));
        let forced = ConsoleConfig {
            secure_cookies: Some(true),
            ..ConsoleConfig::default()
        };
        assert!(forced.secure("127.0.0.1:8080".parse().expect("addr")));
    }
}
