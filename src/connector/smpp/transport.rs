//! Opening one SMPP connection: TCP (with `TCP_NODELAY`, since SMPP is
//! request/response and Nagle would hold back small PDUs), optionally TLS,
//! then rusmppc's client on top.
//!
//! The TLS stack is rustls on ring, configured once per connector: the
//! bundled Mozilla roots plus an optional PEM file of private CAs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};

use crate::config::SmppConfig;

/// Inbound PDUs and background errors of one connection.
pub type Events = Box<dyn Stream<Item = Event> + Unpin + Send>;

/// Largest inbound PDU accepted: `message_payload` can carry up to 64 KiB.
const MAX_COMMAND_LENGTH: usize = 70 * 1024;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("no connection to {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("TLS handshake with {server_name} failed: {source}")]
    Tls {
        server_name: String,
        source: std::io::Error,
    },
}

/// Why the TLS configuration is unusable (found at start, not per connection).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA certificates from {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How this connector reaches its SMSC.
pub struct Transport {
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

impl Transport {
    /// Prepares plain TCP or TLS per `settings`.
    ///
    /// # Errors
    /// [`TlsSetupError`] when the CA file or server name is unusable.
    pub fn new(settings: &SmppConfig) -> Result<Transport, TlsSetupError> {
        let tls = match settings.tls() {
            None => None,
            Some(tls) => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(path) = &tls.ca_file {
                    let ca_error = |reason: String| TlsSetupError::Ca {
                        path: path.display().to_string(),
                        reason,
                    };
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                        .map_err(|e| ca_error(e.to_string()))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| ca_error(e.to_string()))?;
                    if certs.is_empty() {
                        return Err(ca_error("no certificates in the file".into()));
                    }
                    for cert in certs {
                        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
                    }
                }
                let config = ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsSetupError::Config(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = ServerName::try_from(tls.server_name.clone())
                    .map_err(|_| TlsSetupError::ServerName(tls.server_name.clone()))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Transport {
            addr: settings.address(),
            tls,
        })
    }

    /// Connects (within `settings.response_timeout`) and starts a rusmppc
    /// client on the stream. Interface version checks are off because we
    /// bind as SMPP 3.4, which rusmppc (an SMPP 5.0 codec) handles for the
    /// PDUs we use.
    ///
    /// # Errors
    /// [`ConnectError`] when TCP or TLS fail or time out.
    pub async fn open(&self, settings: &SmppConfig) -> Result<(Client, Events), ConnectError> {
        let timeout = settings.response_timeout;
        let connect = async {
            let tcp = TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ConnectError::Tcp {
                    addr: self.addr.clone(),
                    source,
                })?;
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set");
            }
            let builder = ConnectionBuilder::new()
                .max_command_length(MAX_COMMAND_LENGTH)
                .enquire_link_interval(settings.enquire_link_interval)
                .enquire_link_response_timeout(settings.response_timeout)
                .response_timeout(settings.response_timeout)
                .disable_interface_version_check();
            Ok(match &self.tls {
                None => {
                    let (client, events) = builder.connected(tcp);
                    (client, Box::new(events) as Events)
                }
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|source| ConnectError::Tls {
                            server_name: name.to_str().into_owned(),
                            source,
                        })?;
                    let (client, events) = builder.connected(stream);
                    (client, Box::new(events) as Events)
                }
            })
        };
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })
            })
    }
}
