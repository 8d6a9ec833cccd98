//! Admin commands (`herald apikey …`, `herald operator …`) that work whether or not `herald serve`
//! holds the store.
//!
//! The embedded store is locked by the process that serves it, so a running
//! server also listens on a Unix socket next to the database file (mode
//! 0600: only its owner may use it). The CLI opens the store directly when it
//! can and otherwise sends the same command over that socket: one JSON line
//! each way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::api::App;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth;
use crate::model::{format_micros, now_micros};
use crate::store::Store;

/// Longest request line accepted on the socket.
const MAX_LINE: usize = 64 * 1024;

/// An admin command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    ApiKeyCreate {
        name: String,
        scopes: String,
        /// Comma-separated sender-id patterns (empty: the default sender).
        #[serde(default)]
        senders: String,
    },
    ApiKeyList,
    ApiKeyRevoke {
        name: String,
    },
    /// Opt a number out of marketing (as if it had replied STOP).
    OptOut {
        number: String,
    },
    /// Remove an opt-out (as if it had replied START).
    OptIn {
        number: String,
    },
    /// Number prefixes the OTP pumping defence blocked.
    OtpBlocked,
    /// Lift an OTP prefix block.
    OtpUnblock {
        prefix: String,
    },
    /// Create a console account.
    OperatorCreate {
        name: String,
        role: String,
        password: String,
    },
    /// Console accounts (never their hashes).
    OperatorList,
    /// Disable a console account and end its sessions.
    OperatorDisable {
        name: String,
    },
}

/// The answer: printable text, or an error message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminResponse {
    Ok(String),
    Err(String),
}

/// Runs a command against a store this process holds.
pub async fn execute(store: &dyn Store, req: &AdminRequest) -> AdminResponse {
    match run(store, req).await {
        Ok(text) => AdminResponse::Ok(text),
        Err(e) => AdminResponse::Err(e),
    }
}

async fn run(store: &dyn Store, req: &AdminRequest) -> Result<String, String> {
    match req {
        AdminRequest::ApiKeyCreate {
            name,
            scopes,
            senders,
        } => auth::create_api_key(store, name, scopes, senders).await,
        AdminRequest::ApiKeyList => {
            let mut keys = store.api_keys().await.map_err(|e| e.to_string())?;
            keys.sort_by(|a, b| a.name.cmp(&b.name));
            let mut out = String::from("NAME\tSCOPES\tCREATED\tSTATUS\tSENDERS\n");
            for k in keys {
                let status = match k.revoked_at {
                    Some(t) => format!("revoked {}", format_micros(t)),
                    None => "active".to_string(),
                };
                let senders = if k.senders.is_empty() {
                    "(default)".to_string()
                } else {
                    k.senders.join(",")
                };
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    k.name,
                    k.scopes.join(","),
                    format_micros(k.created_at),
                    status,
                    senders
                ));
            }
            Ok(out.trim_end().to_string())
        }
        AdminRequest::OptOut { number } => {
            let number = normalise(number)?;
            store
                .opt_out(&number, now_micros())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{number} opted out of marketing"))
        }
        AdminRequest::OptIn { number } => {
            let number = normalise(number)?;
            if store.opt_in(&number).await.map_err(|e| e.to_string())? {
                Ok(format!("{number} opted back in"))
            } else {
                Err(format!("{number} had not opted out"))
            }
        }
        AdminRequest::OtpBlocked => {
            let blocked = store
                .blocked_prefixes(now_micros())
                .await
                .map_err(|e| e.to_string())?;
            let mut out = String::from("PREFIX\tUNTIL\n");
            for (prefix, until) in blocked {
                out.push_str(&format!("{prefix}\t{}\n", format_micros(until)));
            }
            Ok(out.trim_end().to_string())
        }
        AdminRequest::OtpUnblock { prefix } => {
            if crate::otp::unblock_prefix(store, prefix)
                .await
                .map_err(|e| e.to_string())?
            {
                Ok(format!("OTPs to +{prefix}… may be sent again"))
            } else {
                Err(format!("prefix {prefix} is not blocked"))
            }
        }
        AdminRequest::OperatorCreate {
            name,
            role,
            password,
        } => {
            let result = crate::operator::create(store, name, role, password).await;
            let outcome = match &result {
                Ok(_) => AuditOutcome::Ok,
                Err(e) => AuditOutcome::refused(e.code()),
            };
            audit(
                store,
                AuditEntry::new(
                    CLI,
                    AuditAction::OperatorCreate,
                    format!("operator:{name}"),
                    outcome,
                )
                .with_detail(format!("role {role}")),
            )
            .await;
            result
                .map(|op| format!("created {} '{}'", op.role.as_str(), op.name))
                .map_err(|e| e.to_string())
        }
        AdminRequest::OperatorList => {
            let operators = store.operators().await.map_err(|e| e.to_string())?;
            Ok(crate::operator::describe(&operators))
        }
        AdminRequest::OperatorDisable { name } => {
            let disabled = store
                .disable_operator(name, now_micros())
                .await
                .map_err(|e| e.to_string())?;
            let outcome = if disabled {
                AuditOutcome::Ok
            } else {
                AuditOutcome::refused("not_found")
            };
            audit(
                store,
                AuditEntry::new(
                    CLI,
                    AuditAction::OperatorDisable,
                    format!("operator:{name}"),
                    outcome,
                ),
            )
            .await;
            if disabled {
                Ok(format!(
                    "disabled operator '{name}' and ended their sessions"
                ))
            } else {
                Err(format!("no operator named '{name}'"))
            }
        }
        AdminRequest::ApiKeyRevoke { name } => {
            if store
                .revoke_api_key(name, now_micros())
                .await
                .map_err(|e| e.to_string())?
            {
                Ok(format!("revoked API key '{name}'"))
            } else {
                Err(format!("no API key named '{name}'"))
            }
        }
    }
}

/// Who the audit log names for changes made with the `herald` command
/// line (on the machine, by whoever may run it).
const CLI: &str = "cli";

/// Appends an audit entry; a failure is logged, never returned: the change
/// it records has been made.
async fn audit(store: &dyn Store, entry: AuditEntry) {
    if let Err(e) = store.append_audit(vec![entry]).await {
        tracing::error!(error = %e, "audit entry not written");
    }
}

/// An operator's number for an opt-out or opt-in: E.164 of an existing
/// calling code, whatever `[messages] number_policy` says, so a number the
/// gateway may send to (under `e164`) can always be opted out.
fn normalise(number: &str) -> Result<String, String> {
    crate::text::parse_msisdn_with(number, None, crate::text::NumberPolicy::E164)
        .map(crate::text::Msisdn::into_string)
        .map_err(|e| format!("'{number}' {e}"))
}

/// Why the admin socket cannot be offered safely.
#[derive(Debug, thiserror::Error)]
#[error("admin socket {path}: {reason}; refusing to serve it to other local users")]
pub struct SocketError {
    path: String,
    reason: String,
}

/// Binds the admin socket at `path`, private from the start: it is bound
/// inside a fresh 0700 directory next to `path`, made 0600 and checked
/// there, then renamed into place (replacing a stale one a crashed server
/// left). Anyone who can connect to it can create API keys.
///
/// `Ok(None)` if it cannot be bound at all: admin commands then need the
/// server stopped.
///
/// # Errors
/// When it was bound but cannot be made private or put in place: the
/// server must not start.
pub fn bind_socket(path: &Path) -> Result<Option<UnixListener>, SocketError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |reason: String| SocketError {
        path: path.display().to_string(),
        reason,
    };
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(path = %path.display(), error = %e, "admin socket unavailable; CLI admin commands need the server stopped");
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Created 0700 (the mode is given to mkdir: no wider moment), and
    // checked rather than assumed.
    let staging = match tempfile::Builder::new()
        .prefix(".adm")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
    {
        Ok(d) => d,
        Err(e) => {
            unavailable(&e);
            return Ok(None);
        }
    };
    let mode_of = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .map_err(|e| fail(e.to_string()))
    };
    let staging_mode = mode_of(staging.path())?;
    if staging_mode & 0o077 != 0 {
        return Err(fail(format!(
            "its staging directory is mode {staging_mode:o}"
        )));
    }
    let staged = staging.path().join("s");
    let listener = match UnixListener::bind(&staged) {
        Ok(l) => l,
        Err(e) => {
            unavailable(&e);
            return Ok(None);
        }
    };
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(format!("cannot make it 0600: {e}")))?;
    let mode = mode_of(&staged)?;
    if mode != 0o600 {
        return Err(fail(format!("it is mode {mode:o}, not 0600")));
    }
    let _ = std::fs::remove_file(path);
    std::fs::rename(&staged, path).map_err(|e| fail(format!("cannot move it into place: {e}")))?;
    Ok(Some(listener))
}

/// Serves admin commands on `listener` until `shutdown`, then removes `path`.
pub async fn serve_socket(
    listener: UnixListener,
    path: PathBuf,
    store: Arc<dyn Store>,
    app: Arc<App>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    continue;
                }
            },
        };
        let store = store.clone();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &*store, &app).await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn handle(stream: UnixStream, store: &dyn Store, app: &App) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64);
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(req) => {
            let response = execute(store, &req).await;
            if matches!(req, AdminRequest::ApiKeyRevoke { .. }) {
                app.auth.forget_all();
            }
            response
        }
        Err(e) => AdminResponse::Err(format!("bad admin request: {e}")),
    };
    let mut out = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await
}

/// Sends a command to a running server.
///
/// # Errors
/// When no server answers on `path`.
pub async fn call_socket(path: &Path, req: &AdminRequest) -> Result<AdminResponse, String> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        format!(
            "the store is in use by another process, and its admin socket {} does not answer ({e})",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(read)
        .take(MAX_LINE as u64)
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from the server: {e}"))
}

use tokio::io::AsyncReadExt as _;
