//! The settings of one SMPP connector, resolved from its `[[connectors]]`
//! entry with every default applied, so the rest of the connector never sees
//! an `Option` that means "use the default".

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{BindMode, ConnectorConfig, SplitMode};

/// SMPP's well-known port.
pub const DEFAULT_PORT: u16 = 2775;

/// Everything an SMPP connector needs to run.
#[derive(Debug, Clone)]
pub struct SmppSettings {
    /// Connector name: events and logs carry it; receipts are matched by it.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// Submitting binds (sessions). Each has its own window.
    pub binds: usize,
    pub bind_mode: BindMode,
    /// Outstanding submit_sm per bind.
    pub window: usize,
    /// Submits per second across the connector (0 = no cap); the dispatcher
    /// enforces it, counting message parts.
    pub tps: u32,
    pub tls: Option<TlsSettings>,
    pub split: SplitMode,
    pub enquire_link_interval: Duration,
    /// Longest wait for connect, bind_resp, submit_sm_resp and enquire_link_resp.
    pub response_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long a bind stops submitting after the carrier said "throttled".
    pub throttle_pause: Duration,
    /// Sender of messages without `from`; empty lets the carrier decide.
    pub source_addr: String,
    pub source_ton: Option<u8>,
    pub source_npi: Option<u8>,
}

/// TLS towards the carrier.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Name the certificate must carry.
    pub server_name: String,
    /// Extra trusted CA certificates (PEM), besides the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

impl SmppSettings {
    /// Applies the defaults to a validated `kind = "smpp"` entry.
    pub fn from_config(c: &ConnectorConfig) -> SmppSettings {
        let host = c.host.clone().unwrap_or_default();
        let tls = (c.tls == Some(true)).then(|| TlsSettings {
            server_name: c.tls_server_name.clone().unwrap_or_else(|| host.clone()),
            ca_file: c.tls_ca.clone(),
        });
        let reconnect_min = c.reconnect_min.unwrap_or(Duration::from_secs(1));
        SmppSettings {
            name: c.name.clone(),
            port: c.port.unwrap_or(DEFAULT_PORT),
            host,
            system_id: c.system_id.clone().unwrap_or_default(),
            password: c.password.clone().unwrap_or_default(),
            system_type: c.system_type.clone().unwrap_or_default(),
            binds: c.binds.map_or(1, |b| b as usize).max(1),
            bind_mode: c.bind.unwrap_or(BindMode::Transceiver),
            window: c.window.max(1),
            tps: c.tps,
            tls,
            split: c.split.unwrap_or(SplitMode::Udh),
            enquire_link_interval: c.enquire_link_interval.unwrap_or(Duration::from_secs(30)),
            response_timeout: c.response_timeout.unwrap_or(Duration::from_secs(10)),
            reconnect_min,
            reconnect_max: c
                .reconnect_max
                .unwrap_or(Duration::from_secs(60))
                .max(reconnect_min),
            throttle_pause: c.throttle_pause.unwrap_or(Duration::from_secs(1)),
            source_addr: c.source_addr.clone().unwrap_or_default(),
            source_ton: c.source_ton,
            source_npi: c.source_npi,
        }
    }

    /// `host:port`, for connecting and for logs.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_fill_every_unset_key() {
        let c = Config::from_toml(
            "[[connectors]]\nname = \"c\"\nkind = \"smpp\"\nhost = \"::1\"\nsystem_id = \"x\"\n",
        )
        .expect("valid");
        let s = SmppSettings::from_config(&c.connectors[0]);
        assert_eq!(s.address(), "[::1]:2775");
        assert_eq!(s.binds, 1);
        assert_eq!(s.window, 64);
        assert_eq!(s.bind_mode, BindMode::Transceiver);
        assert_eq!(s.split, SplitMode::Udh);
        assert!(s.tls.is_none());
        assert!(s.reconnect_max >= s.reconnect_min);
    }
}
