//! One webhook POST: resolve the host, connect, TLS for `https`, one
//! HTTP/1.1 request, its status.
//!
//! Not reqwest: its rustls support without aws-lc needs a process-wide
//! crypto provider, or every other `reqwest::Client` in the process panics.
//! Speaking HTTP/1.1 through hyper's client connection over tokio-rustls
//! (ring, as the SMPP connector does) also means the address we connect to
//! is exactly one we resolved ourselves. Each delivery uses a connection of
//! its own and closes it: no pool can hand a request to a connection made
//! for another destination.
//!
//! Every address is checked against the [`DestinationPolicy`] before it is
//! connected to: literal ones, and each address a name resolves to.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::destination::{DestinationPolicy, Forbidden};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};

/// `User-Agent` of every delivery.
const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("not an http(s) URL with a host")]
    BadUrl,
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl SendError {
    /// Whether retrying can never help (the URL is unusable or leads
    /// inside).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::BadUrl | SendError::Forbidden(_))
    }
}

/// Why the TLS settings are unusable (found at start, not per delivery).
#[derive(Debug, thiserror::Error)]
#[error("cannot read CA certificates from {path}: {reason}")]
pub struct TlsSetupError {
    path: String,
    reason: String,
}

/// Sends webhook requests.
#[derive(Clone)]
pub struct Sender {
    tls: TlsConnector,
    timeout: Duration,
    policy: DestinationPolicy,
}

impl Sender {
    /// A sender trusting the bundled Mozilla roots plus the PEM certificates
    /// in `ca_file`; one attempt (connect, TLS, request, status) takes at
    /// most `timeout`; only addresses `policy` allows are connected to.
    ///
    /// # Errors
    /// When `ca_file` cannot be read or holds no certificate.
    pub fn new(
        ca_file: Option<&Path>,
        timeout: Duration,
        policy: DestinationPolicy,
    ) -> Result<Sender, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let error = |reason: String| TlsSetupError {
                path: path.display().to_string(),
                reason,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| error(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| error(e.to_string()))?;
            if certs.is_empty() {
                return Err(error("no certificates in the file".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| error(e.to_string()))?;
            }
        }
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsSetupError {
                    path: String::new(),
                    reason: e.to_string(),
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Sender {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            policy,
        })
    }

    /// POSTs `body` with `headers` to `url` and returns the answer's status.
    ///
    /// # Errors
    /// [`SendError`] when the request could not be made or got no answer.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<StatusCode, SendError> {
        tokio::time::timeout(self.timeout, self.post_now(url, headers, body))
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }

    async fn post_now(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<StatusCode, SendError> {
        let target = Target::parse(url)?;
        let addrs = self.allowed(target.resolve().await?)?;
        let stream = connect(&addrs).await?;
        let mut request = hyper::Request::post(target.path_and_query.as_str())
            .header(hyper::header::HOST, target.authority.as_str())
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header(hyper::header::CONNECTION, "close");
        if let Some(credentials) = &target.basic_auth {
            request = request.header(hyper::header::AUTHORIZATION, credentials.as_str());
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| SendError::BadUrl)?;
        if target.tls {
            let name = ServerName::try_from(target.host.clone()).map_err(|_| SendError::BadUrl)?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|source| SendError::Tls {
                    host: target.host.clone(),
                    source,
                })?;
            exchange(tls, request).await
        } else {
            exchange(stream, request).await
        }
    }
}

impl Sender {
    /// The addresses the policy allows; when none is, the first refusal.
    fn allowed(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, SendError> {
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.policy.check(a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        match refused {
            Some(e) if allowed.is_empty() => Err(SendError::Forbidden(e)),
            _ => Ok(allowed),
        }
    }
}

/// What a URL says about where and how to connect.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Name or address, without IPv6 brackets.
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// `Authorization: Basic …` from the URL's user and password, which
    /// receivers put there to authenticate Herald.
    basic_auth: Option<String>,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, SendError> {
        let url = reqwest::Url::parse(url).map_err(|_| SendError::BadUrl)?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(SendError::BadUrl),
        };
        let host_str = url.host_str().ok_or(SendError::BadUrl)?;
        let host = host_str
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host_str)
            .to_string();
        let port = url.port_or_known_default().ok_or(SendError::BadUrl)?;
        let authority = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        let basic_auth = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let decode = percent_decode;
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or_default())
            );
            format!("Basic {}", STANDARD.encode(pair))
        });
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Target {
            tls,
            host,
            port,
            authority,
            basic_auth,
            path_and_query,
        })
    }

    /// The addresses to try: the literal address, or what the name resolves to.
    async fn resolve(&self) -> Result<Vec<SocketAddr>, SendError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let resolve_error = |source| SendError::Resolve {
            host: self.host.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(resolve_error)?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(std::io::Error::other("no addresses")));
        }
        Ok(addrs)
    }
}

/// `%XX` escapes decoded (userinfo in URLs is percent-encoded); invalid
/// escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects to the first address that answers.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, SendError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small request, small answer: do not hold them back.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(source) => {
                last = Some(SendError::Connect {
                    addr: *addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(SendError::BadUrl))
}

/// Sends `request` on a fresh connection and returns the answer's status;
/// the body is not read and the connection is closed.
async fn exchange<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<StatusCode, SendError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let mut connection = std::pin::pin!(connection);
    let mut answer = std::pin::pin!(sender.send_request(request));
    tokio::select! {
        biased;
        answer = &mut answer => Ok(answer?.status()),
        // The connection ends after the answer (`Connection: close`), which
        // may be noticed first: the answer is then already there.
        closed = &mut connection => {
            closed?;
            Ok(answer.await?.status())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_host_header_path_and_credentials() {
        let t = Target::parse("https://user:p%40ss@example.com/hook?a=1").expect("url");
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
        assert_eq!(t.authority, "example.com");
        assert_eq!(t.path_and_query, "/hook?a=1");
        // base64("user:p@ss")
        assert_eq!(t.basic_auth.as_deref(), Some("Basic dXNlcjpwQHNz"));
        let t = Target::parse("http://[::1]:8080").expect("url");
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        assert_eq!(t.authority, "[::1]:8080");
        assert_eq!(t.path_and_query, "/");
        assert_eq!(t.basic_auth, None);
        assert!(Target::parse("ftp://example.com/").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
