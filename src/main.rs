//! The `herald` binary: one command-line entry for every role.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use herald::admin::{self, AdminRequest, AdminResponse};
use herald::config::Config;
use herald::server::{self, Gateway, StartError};
use herald::store::StoreError;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "SMS gateway for the messages that must not wait"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Config file (default config/herald.toml).
    #[arg(long, env = "HERALD_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: HTTP API, dispatcher, connectors.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage marketing opt-outs (normally set by STOP/START replies).
    Optout {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: OptoutAction,
    },
    /// Run a standalone SMPP 3.4 SMSC simulator (carrier stand-in).
    SmscSim(herald::smsc_sim::cli::SmscSimArgs),
    /// Run the benchmark suite against fresh local servers (throughput, head-of-line latency, limits, Redis).
    Bench(herald::bench::BenchArgs),
    /// Check or try operator scripts and templates.
    Script {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: herald::script::cli::ScriptCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: ApikeyAction,
    },
    /// Manage console operator accounts.
    Operator {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// OTP number prefixes blocked by the SMS-pumping defence.
    Otp {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: OtpAction,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Create an account; the password is read from standard input (one line).
    Create {
        #[arg(long)]
        name: String,
        /// operator (compose and send), approver (also approve others'
        /// broadcasts) or admin (also read the audit log).
        #[arg(long)]
        role: String,
    },
    /// List accounts (never their password hashes).
    List,
    /// Disable an account and end its console sessions.
    Disable { name: String },
}

/// The first line of standard input, without its line end: the password
/// never appears in the command line or the shell history.
fn read_password() -> Result<String, String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let _ = write!(std::io::stderr(), "password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[derive(Subcommand)]
enum OtpAction {
    /// List blocked prefixes and when each block ends.
    Blocked,
    /// Lift a block (and forget the prefix's conversion history).
    Unblock { prefix: String },
}

#[derive(Subcommand)]
enum OptoutAction {
    /// Opt a number out of marketing.
    Add { number: String },
    /// Remove a number's opt-out.
    Remove { number: String },
}

#[derive(Subcommand)]
enum ApikeyAction {
    /// Create a key and print its secret once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: send, otp, broadcast, admin; or all.
        #[arg(long)]
        scopes: String,
        /// Comma-separated sender ids this key may put in `from`; `*` is a
        /// wildcard (e.g. `SHOP*,+4479111*`). Default: none, only the
        /// default sender (`from` left out).
        #[arg(long, default_value = "")]
        senders: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by name.
    Revoke { name: String },
}

fn load_config(arg: &ConfigArg) -> Result<Config, String> {
    Config::load(arg.config.as_deref()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(&config).await,
            Command::Apikey { config, action } => {
                let request = match action {
                    ApikeyAction::Create {
                        name,
                        scopes,
                        senders,
                    } => AdminRequest::ApiKeyCreate {
                        name,
                        scopes,
                        senders,
                    },
                    ApikeyAction::List => AdminRequest::ApiKeyList,
                    ApikeyAction::Revoke { name } => AdminRequest::ApiKeyRevoke { name },
                };
                admin_command(&config, request).await
            }
            Command::Operator { config, action } => {
                let request = match action {
                    OperatorAction::Create { name, role } => match read_password() {
                        Ok(password) => AdminRequest::OperatorCreate {
                            name,
                            role,
                            password,
                        },
                        Err(e) => return Err(e),
                    },
                    OperatorAction::List => AdminRequest::OperatorList,
                    OperatorAction::Disable { name } => AdminRequest::OperatorDisable { name },
                };
                admin_command(&config, request).await
            }
            Command::Otp { config, action } => {
                let request = match action {
                    OtpAction::Blocked => AdminRequest::OtpBlocked,
                    OtpAction::Unblock { prefix } => AdminRequest::OtpUnblock { prefix },
                };
                admin_command(&config, request).await
            }
            Command::Optout { config, action } => {
                let request = match action {
                    OptoutAction::Add { number } => AdminRequest::OptOut { number },
                    OptoutAction::Remove { number } => AdminRequest::OptIn { number },
                };
                admin_command(&config, request).await
            }
            Command::Script { config, action } => load_config(&config).and_then(|config| {
                herald::script::cli::run(action, &config, &mut std::io::stdout().lock())
            }),
            Command::SmscSim(args) => herald::smsc_sim::cli::run(args)
                .await
                .map_err(|e| format!("{e:#}")),
            Command::Bench(args) => herald::bench::run(args).await.map_err(|e| format!("{e:#}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(arg: &ConfigArg) -> Result<(), String> {
    let config = load_config(arg)?;
    herald::telemetry::init(&config.log.level, config.log.format == "json");
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.http.listen))?;
    let gateway = Gateway::start(config, listener)
        .await
        .map_err(|e| match e {
            StartError::Store(StoreError::Locked) => {
                "the store is in use by another herald process".to_string()
            }
            other => other.to_string(),
        })?;
    // Parents (tests, the benchmark) read the bound port from this line.
    println!("herald listening on {}", gateway.local_addr());
    tokio::select! {
        () = wait_for_signal() => tracing::info!("shutting down"),
        () = gateway.failed() => tracing::error!("a task failed; shutting down"),
    }
    gateway.shutdown();
    // A task that stopped the gateway makes the exit status non-zero, so
    // the process manager restarts it.
    gateway.wait().await.map_err(|e| e.to_string())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs an admin command on the store, or through a running server's socket.
async fn admin_command(arg: &ConfigArg, request: AdminRequest) -> Result<(), String> {
    let config = load_config(arg)?;
    let response = match server::open_store(&config, herald::store::Role::Client).await {
        Ok(store) => {
            let r = admin::execute(&*store, &request).await;
            store.close().await;
            r
        }
        Err(StartError::Store(StoreError::Locked)) => {
            admin::call_socket(&server::admin_socket_path(&config), &request).await?
        }
        Err(e) => return Err(e.to_string()),
    };
    match response {
        AdminResponse::Ok(text) => {
            // A closed pipe (e.g. `| head -1`) is the reader's choice, not an error.
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            Ok(())
        }
        AdminResponse::Err(e) => Err(e),
    }
}
