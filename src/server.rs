//! `herald serve`: wires store, connectors, dispatchers, maintenance and the
//! HTTP API together, and shuts them down in order.
//!
//! Shutdown order: stop admissions and new connections, let in-flight
//! requests finish, stop dispatchers (each drains its window for a bounded
//! time), stop connectors, then close the store so every recorded outcome is
//! committed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, App};
use crate::config::{Config, ConnectorConfig, StoreKind};
use crate::connector::sim::SimConnector;
use crate::connector::smpp::SmppConnector;
use crate::connector::{Connector, ConnectorEvent};
use crate::dispatch;
use crate::listener::ConnectionLimits;
use crate::metrics::Metrics;
use crate::script::{Clock, ScriptEnv, Scripts, reload};
use crate::seal::Sealer;
use crate::store::{EmbeddedStore, RedisSettings, RedisStore, Role, Store, StoreError};
use crate::supervise::{Supervisor, TaskFailure};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error(transparent)]
    AdminSocket(#[from] crate::admin::SocketError),
}

/// Opens the configured store. A gateway opens it as a [`Role::Node`]
/// (claims work, heartbeat); CLI commands as a [`Role::Client`].
///
/// # Errors
/// The store's own error, e.g. [`StoreError::Locked`].
pub async fn open_store(config: &Config, role: Role) -> Result<Arc<dyn Store>, StartError> {
    match config.store.kind {
        StoreKind::Embedded => Ok(Arc::new(EmbeddedStore::open(
            &config.store.path,
            config.store.cache_mb * 1024 * 1024,
        )?)),
        StoreKind::Redis => {
            let url = config
                .store
                .url
                .clone()
                .ok_or_else(|| StartError::Config("store.url is required".into()))?;
            let settings = RedisSettings {
                url,
                prefix: config.store.prefix.clone(),
                node_id: config
                    .store
                    .node_id
                    .clone()
                    .unwrap_or_else(|| default_node_id(config)),
                lease: config.store.lease_timeout,
                durability: config.store.redis_durability,
            };
            if role == Role::Node {
                tracing::info!(node = %settings.node_id, prefix = %settings.prefix, "joining the redis store");
            }
            Ok(Arc::new(RedisStore::open(&settings, role).await?))
        }
    }
}

/// Host name and HTTP port: stable across restarts of one node, so a
/// restarted node takes its own unfinished claims back at once. With a
/// system-chosen port (0) the process id stands in, and claims of an earlier
/// process return after the lease instead.
fn default_node_id(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    let port = config.http.listen.port();
    if port == 0 {
        format!("{host}:pid{}", std::process::id())
    } else {
        format!("{host}:{port}")
    }
}

/// The path of the admin socket that lets CLI commands reach a running
/// server holding the embedded store.
pub fn admin_socket_path(config: &Config) -> std::path::PathBuf {
    config.store.path.with_extension("sock")
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    supervisor: Supervisor,
}

impl Gateway {
    /// Starts every part on `listener` and returns once serving.
    ///
    /// # Errors
    /// When the store cannot be opened or the config is unusable.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Gateway, StartError> {
        Self::start_with_clock(config, listener, Arc::new(jiff::Timestamp::now)).await
    }

    /// [`Gateway::start`] with the clock scripts read (`local_hour`,
    /// `next_local_time`, `unix_now`): tests pin it to run time-dependent
    /// scripts, such as quiet hours, at a chosen time. Everything else
    /// (validity, deferrals, dispatch) keeps the real clock.
    ///
    /// # Errors
    /// As [`Gateway::start`].
    pub async fn start_with_clock(
        config: Config,
        listener: TcpListener,
        clock: Clock,
    ) -> Result<Gateway, StartError> {
        let config = Arc::new(config);
        let addr = listener.local_addr().map_err(StartError::Listen)?;
        let store = open_store(&config, Role::Node).await?;
        // The embedded store is held by this process alone, so CLI commands
        // reach it through this socket; Redis they can reach themselves.
        // Bound before anything runs: a socket that cannot be made private
        // stops the start.
        let admin_path = admin_socket_path(&config);
        let admin_listener = if config.store.kind == StoreKind::Embedded {
            match crate::admin::bind_socket(&admin_path) {
                Ok(l) => l,
                Err(e) => {
                    store.close().await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new());
        let (events_tx, events_rx) = mpsc::channel::<ConnectorEvent>(65_536);
        let mut connectors: Vec<Arc<dyn Connector>> = Vec::new();
        for c in &config.connectors {
            match c {
                ConnectorConfig::Sim(sim) => {
                    let resume = store.awaiting_receipts(&sim.name).await?;
                    if !resume.is_empty() {
                        tracing::info!(connector = %sim.name, receipts = resume.len(), "resuming receipts of earlier submits");
                    }
                    connectors.push(SimConnector::start(sim.clone(), events_tx.clone(), resume));
                }
                ConnectorConfig::Smpp(smpp) => {
                    // A real SMSC resends receipts still pending when we bind again.
                    let smpp = SmppConnector::start(smpp.clone(), events_tx.clone())
                        .map_err(|e| StartError::Config(e.to_string()))?;
                    connectors.push(smpp);
                }
            }
        }
        drop(events_tx);

        let scripts = Scripts::load(
            &config.scripts,
            ScriptEnv {
                connectors: config
                    .connectors
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect(),
                health: crate::connector::health_of(&connectors),
                clock,
            },
            metrics.clone(),
        );
        // Without a watcher the gateway still serves; changes then need a restart.
        let watcher = if config.scripts.watch {
            reload::watch(&scripts, config.scripts.debounce).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "script hot reload is off");
                None
            })
        } else {
            None
        };
        // Seals OTP texts until submit; also keys the OTP code hashes.
        let sealer = Arc::new(
            Sealer::load_or_create(&config.seal_key_path())
                .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let dispatch_stop = CancellationToken::new();
        // Every long-running task below is supervised: see `crate::supervise`.
        let supervisor = Supervisor::new(metrics.clone(), dispatch_stop.clone());
        let app = Arc::new(App::new(
            config.clone(),
            store.clone(),
            metrics.clone(),
            connectors.clone(),
            scripts,
            sealer.clone(),
            supervisor.clone(),
        ));
        let shutdown = CancellationToken::new();
        let workers = TaskTracker::new();
        for connector in &connectors {
            dispatch::spawn_dispatcher(
                &workers,
                &supervisor,
                store.clone(),
                connector.clone(),
                config.dispatch.clone(),
                metrics.clone(),
                Some(sealer.clone()),
                dispatch_stop.clone(),
            );
        }
        // Not on `workers`: it runs until the connectors (the event senders)
        // are gone, after the workers stopped.
        let receipts = tokio::spawn(
            supervisor.stopping(
                "receipts",
                crate::recorder::record_receipts(
                    store.clone(),
                    events_rx,
                    metrics.clone(),
                    crate::inbound::InboundHandler::new(config.inbound.clone())
                        .with_scripts(app.scripts.clone(), app.admitter.clone()),
                ),
            ),
        );
        // Their work is in the store: a new copy takes over where one panicked.
        workers.spawn(supervisor.restarting("webhooks", {
            let (store, config, metrics, stop) = (
                store.clone(),
                config.clone(),
                metrics.clone(),
                dispatch_stop.clone(),
            );
            move || {
                crate::webhook::run(
                    store.clone(),
                    config.webhooks.clone(),
                    config.inbound.webhook_secret.clone(),
                    metrics.clone(),
                    stop.clone(),
                )
            }
        }));
        workers.spawn(supervisor.restarting("maintenance", {
            let (store, retention, metrics, stop) = (
                store.clone(),
                config.retention(),
                metrics.clone(),
                dispatch_stop.clone(),
            );
            move || {
                crate::maintenance::run_maintenance(
                    store.clone(),
                    retention,
                    Duration::from_secs(1),
                    metrics.clone(),
                    stop.clone(),
                )
            }
        }));
        // Its work is in the store (each broadcast's cursor): a new copy
        // resumes where one panicked.
        workers.spawn(supervisor.restarting("broadcast_fanout", {
            let (store, admitter, stop) =
                (store.clone(), app.admitter.clone(), dispatch_stop.clone());
            let health = crate::connector::health_of(&connectors);
            let wake = app.broadcasts.wake_handle();
            let caps: std::collections::HashMap<String, Option<u32>> = connectors
                .iter()
                .map(|c| (c.name().to_string(), c.tps().map(std::num::NonZeroU32::get)))
                .collect();
            move || {
                crate::broadcast::fanout::FanOutTask {
                    store: store.clone(),
                    admitter: admitter.clone(),
                    health: health.clone(),
                    caps: caps.clone(),
                    wake: wake.clone(),
                    metrics: metrics.clone(),
                    stop: stop.clone(),
                }
                .run()
            }
        }));
        workers.spawn(supervisor.restarting("otp_purge", {
            let (store, stop) = (store.clone(), dispatch_stop.clone());
            move || {
                crate::maintenance::purge_otps(store.clone(), Duration::from_secs(60), stop.clone())
            }
        }));
        workers.close();
        // A task that cannot go on stops the gateway (and `herald serve`
        // exits non-zero, see `Gateway::wait`).
        tokio::spawn({
            let (supervisor, shutdown) = (supervisor.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    () = supervisor.failed() => shutdown.cancel(),
                    () = shutdown.cancelled() => {}
                }
            }
        });

        let admin = admin_listener.map(|listener| {
            tokio::spawn(crate::admin::serve_socket(
                listener,
                admin_path,
                store.clone(),
                app.clone(),
                shutdown.clone(),
            ))
        });

        let router = crate::console::attach(api::router(app.clone()), app.clone());
        let http_stop = shutdown.clone();
        let limits = ConnectionLimits {
            max_connections: config.http.max_connections,
            header_read_timeout: config.http.header_read_timeout,
        };
        let done = tokio::spawn(async move {
            crate::listener::serve(listener, router, limits, {
                let app = app.clone();
                async move {
                    http_stop.cancelled().await;
                    app.stop_accepting();
                }
            })
            .await;
            app.stop_accepting();
            drop(watcher);
            dispatch_stop.cancel();
            workers.wait().await;
            for c in &connectors {
                c.shutdown().await;
            }
            // Receipts still queued are applied before the store closes.
            let _ = tokio::time::timeout(Duration::from_secs(5), receipts).await;
            store.close().await;
            if let Some(admin) = admin {
                admin.abort();
            }
            tracing::info!("herald stopped");
        });
        tracing::info!(%addr, "herald listening");
        Ok(Gateway {
            addr,
            shutdown,
            done,
            supervisor,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The supervisor of the gateway's tasks.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Resolves when a task failed for good and the gateway is stopping
    /// because of it (then [`Gateway::wait`] returns the failure).
    pub async fn failed(&self) {
        self.supervisor.failed().await;
    }

    /// Waits until everything stopped.
    ///
    /// # Errors
    /// The task whose panic stopped the gateway, if one did.
    pub async fn wait(self) -> Result<(), TaskFailure> {
        let _ = self.done.await;
        self.supervisor.failure().map_or(Ok(()), Err)
    }
}
