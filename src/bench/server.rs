//! The processes of one scenario: a `herald serve` child and, for
//! `--connector smpp`, the `herald smsc-sim` child it talks to over TCP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

use anyhow::{Context, bail};

use super::BenchArgs;
use super::redis_server::{Persistence, RedisServer};

/// The carrier a scenario's server submits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The in-process simulated carrier (`kind = "sim"`).
    Sim,
    /// An `smpp` connector (one bind) to a `herald smsc-sim` child process.
    Smpp,
}

impl Carrier {
    /// Parses `--connector`.
    ///
    /// # Errors
    /// When the name is neither `sim` nor `smpp`.
    pub fn parse(name: &str) -> anyhow::Result<Carrier> {
        match name {
            "sim" => Ok(Carrier::Sim),
            "smpp" => Ok(Carrier::Smpp),
            other => bail!("unknown connector '{other}' (sim, smpp)"),
        }
    }

    /// How the carrier is reached, for reports.
    pub fn describe(self, window: usize, dlr_delay_ms: u64, sim_nodelay: bool) -> String {
        match self {
            Carrier::Sim => format!("sim carrier ({dlr_delay_ms} ms receipts)"),
            Carrier::Smpp => {
                let nagle = if sim_nodelay {
                    "TCP_NODELAY"
                } else {
                    "Nagle on"
                };
                format!(
                    "SMPP over TCP to a herald smsc-sim process (1 bind, window {window}, {dlr_delay_ms} ms receipts, {nagle})"
                )
            }
        }
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the first stdout line of `child` and strips `prefix` from it.
fn announced(child: &mut Child, prefix: &str) -> anyhow::Result<String> {
    Ok(announced_lines(child, &[prefix])?.remove(0))
}

/// The rest of each of the child's first lines, which start with `prefixes`
/// in order.
fn announced_lines(child: &mut Child, prefixes: &[&str]) -> anyhow::Result<Vec<String>> {
    let stdout = child.stdout.take().context("child stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut out = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        match line.trim().strip_prefix(prefix) {
            Some(rest) => out.push(rest.to_string()),
            None => bail!("child did not start: {line:?}"),
        }
    }
    Ok(out)
}

/// The store the scenario's servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    Embedded,
    Redis,
}

impl StoreChoice {
    /// Parses `--store`.
    ///
    /// # Errors
    /// When the name is neither `embedded` nor `redis`.
    pub fn parse(name: &str) -> anyhow::Result<StoreChoice> {
        match name {
            "embedded" => Ok(StoreChoice::Embedded),
            "redis" => Ok(StoreChoice::Redis),
            other => bail!("unknown store '{other}' (embedded, redis)"),
        }
    }
}

/// The Redis of a scenario: a private child process, or one given by URL.
enum BenchRedis {
    Own(RedisServer),
    External(String),
}

impl BenchRedis {
    fn url(&self) -> String {
        match self {
            BenchRedis::Own(r) => r.url(),
            BenchRedis::External(url) => url.clone(),
        }
    }
}

/// The running servers of a scenario (one or more nodes, their SMSC and
/// Redis), killed on drop.
pub struct BenchServer {
    // Field order is drop order: the nodes go before their SMSC and Redis.
    nodes: Vec<Process>,
    smsc: Option<Process>,
    redis: Option<BenchRedis>,
    /// The first node's API.
    pub base: String,
    /// Every node's API; load is spread over them.
    pub bases: Vec<String>,
    pub key: String,
    /// The SMSC simulator's control endpoint, when it records what it
    /// receives ([`BenchServer::start_recording`]).
    pub smsc_control: Option<String>,
    /// The first node's JSON log, when started with
    /// [`BenchServer::start_traced`] (taken by the scenario that reads it).
    log: Option<ChildStderr>,
    dir: Option<tempfile::TempDir>,
}

/// What a scenario asks of its servers beyond the carrier.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// The SMSC simulator records the texts it receives.
    record: bool,
    /// The first node logs JSON at this `tracing` filter to a pipe the
    /// scenario reads, instead of to the terminal.
    trace: Option<&'static str>,
}

impl BenchServer {
    /// Starts `--nodes` servers whose carrier is capped at `tps` (0 = no
    /// cap), with a window of `window` outstanding submits, running the
    /// scripts and templates of `scripts` (a directory holding `scripts/`
    /// and `templates/`), or none.
    pub fn start(
        args: &BenchArgs,
        tps: u32,
        window: usize,
        scripts: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::start_with(args, tps, window, scripts, Options::default())
    }

    /// [`BenchServer::start`] with an SMSC simulator (`--connector smpp`)
    /// that records the texts it receives, readable at `smsc_control`.
    pub fn start_recording(
        args: &BenchArgs,
        tps: u32,
        window: usize,
        scripts: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let options = Options {
            record: true,
            ..Options::default()
        };
        Self::start_with(args, tps, window, scripts, options)
    }

    /// [`BenchServer::start`] (no scripts) whose first node logs JSON at
    /// the `tracing` filter `trace` to a pipe read with
    /// [`BenchServer::take_log`]: a scenario can read what the server
    /// itself measured (e.g. the fan-out's per-chunk timings).
    pub fn start_traced(
        args: &BenchArgs,
        tps: u32,
        window: usize,
        trace: &'static str,
    ) -> anyhow::Result<Self> {
        let options = Options {
            trace: Some(trace),
            ..Options::default()
        };
        Self::start_with(args, tps, window, None, options)
    }

    /// The first node's JSON log (once), when started traced.
    pub fn take_log(&mut self) -> Option<ChildStderr> {
        self.log.take()
    }

    fn start_with(
        args: &BenchArgs,
        tps: u32,
        window: usize,
        scripts: Option<&Path>,
        options: Options,
    ) -> anyhow::Result<Self> {
        let record = options.record;
        let carrier = Carrier::parse(&args.connector)?;
        let store = StoreChoice::parse(&args.store)?;
        if args.nodes == 0 || (args.nodes > 1 && store != StoreChoice::Redis) {
            bail!("--nodes above 1 needs --store redis (nodes share the store)");
        }
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("temp dir")?;
        let exe = std::env::current_exe().context("own executable")?;
        let dlr_delay_ms = args.dlr_delay_ms;
        let mut smsc_control = None;
        let (connector, smsc) = match carrier {
            Carrier::Sim => (
                format!(
                    "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ntps = {tps}\nwindow = {window}\ndelay_ms = {dlr_delay_ms}\n"
                ),
                None,
            ),
            Carrier::Smpp => {
                let mut sim = Command::new(&exe);
                sim.args(["smsc-sim", "--listen", "127.0.0.1:0", "--dlr-delay-ms"])
                    .arg(dlr_delay_ms.to_string());
                if !args.sim_nodelay {
                    sim.arg("--nagle");
                }
                if record {
                    sim.args(["--record", "--control", "127.0.0.1:0"]);
                }
                let mut child = sim
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("spawn herald smsc-sim")?;
                let lines = if record {
                    announced_lines(
                        &mut child,
                        &["smsc-sim listening on ", "smsc-sim control on "],
                    )
                } else {
                    announced_lines(&mut child, &["smsc-sim listening on "])
                };
                let smsc = Process(child);
                let lines = lines?;
                if let Some(control) = lines.get(1) {
                    smsc_control = Some(format!("http://{control}"));
                }
                let addr: std::net::SocketAddr = lines[0].parse().context("smsc-sim address")?;
                (
                    format!(
                        "[[connectors]]\nname = \"smpp\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
                         system_id = \"herald\"\npassword = \"bench\"\nbinds = 1\nwindow = {window}\ntps = {tps}\n",
                        addr.port()
                    ),
                    Some(smsc),
                )
            }
        };
        let redis = match (store, &args.redis_url) {
            (StoreChoice::Embedded, _) => None,
            (StoreChoice::Redis, Some(url)) => Some(BenchRedis::External(url.clone())),
            (StoreChoice::Redis, None) => {
                let persistence = match args.redis_fsync.as_str() {
                    "always" => Persistence::AofAlways,
                    "everysec" => Persistence::AofEverySec,
                    "off" => Persistence::None,
                    other => bail!("unknown --redis-fsync '{other}' (always, everysec, off)"),
                };
                Some(BenchRedis::Own(RedisServer::start(persistence)?))
            }
        };
        // Each run gets its own key prefix, so an external Redis can be reused.
        let prefix = format!("bench{}", std::process::id());
        let scripts = match scripts {
            None => "[scripts]\nenabled = false\n".to_string(),
            Some(d) => {
                let d = std::path::absolute(d).context("scripts dir")?;
                format!(
                    "[scripts]\ndir = \"{}\"\ntemplates_dir = \"{}\"\n",
                    d.join("scripts").display(),
                    d.join("templates").display()
                )
            }
        };
        // One seal key for every node (it also keys the OTP code hashes),
        // kept with the run; the pumping defence is off so the `otp`
        // scenario can issue thousands of codes to one prefix.
        let otp = format!(
            "[otp]\nseal_key_file = \"{}\"\napp_per_hour = 0\nprefix_per_hour = 0\nblock_min_issued = 0\n",
            dir.path().join("seal.key").display()
        );
        let mut configs = Vec::new();
        for n in 0..args.nodes {
            let store_toml = match &redis {
                None => format!(
                    "[store]\npath = \"{}\"\n",
                    dir.path().join("data/herald.db").display()
                ),
                Some(r) => format!(
                    "[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\nnode_id = \"bench-{n}\"\n\
                     redis_durability = \"{}\"\n",
                    r.url(),
                    match super::limits::bench_durability(
                        matches!(r, BenchRedis::Own(_)),
                        &args.redis_fsync
                    ) {
                        crate::config::RedisDurability::Always => "always",
                        crate::config::RedisDurability::Everysec => "everysec",
                        crate::config::RedisDurability::AcceptLoss => "accept_loss",
                    }
                ),
            };
            let log = match options.trace {
                Some(filter) if n == 0 => {
                    format!("[log]\nlevel = \"{filter}\"\nformat = \"json\"\n")
                }
                _ => "[log]\nlevel = \"warn\"\n".to_string(),
            };
            let config = dir.path().join(format!("herald-{n}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[http]\nlisten = \"127.0.0.1:0\"\n\
                     {store_toml}\
                     {log}\
                     {scripts}\
                     {otp}\
                     {connector}"
                ),
            )?;
            configs.push(config);
        }
        let key = create_key(&exe, &configs[0])?;
        let mut nodes = Vec::new();
        let mut bases = Vec::new();
        let mut log = None;
        for (n, config) in configs.iter().enumerate() {
            let traced = n == 0 && options.trace.is_some();
            let mut command = Command::new(&exe);
            if traced {
                // The config's filter, not one the bench was started with.
                command.env_remove("RUST_LOG");
            }
            let mut child = command
                .arg("serve")
                .env("HERALD_CONFIG", config)
                .stdout(Stdio::piped())
                .stderr(if traced {
                    Stdio::piped()
                } else {
                    Stdio::inherit()
                })
                .spawn()
                .context("spawn herald serve")?;
            if traced {
                log = child.stderr.take();
            }
            let addr = announced(&mut child, "herald listening on ");
            nodes.push(Process(child));
            bases.push(format!("http://{}", addr?));
        }
        let dir = if args.keep_data {
            eprintln!("bench data kept in {}", dir.keep().display());
            None
        } else {
            Some(dir)
        };
        Ok(BenchServer {
            nodes,
            smsc,
            redis,
            base: bases[0].clone(),
            bases,
            key,
            smsc_control,
            log,
            dir,
        })
    }

    /// The API the `i`-th client talks to: clients spread over the nodes.
    pub fn base_for(&self, i: usize) -> &str {
        &self.bases[i % self.bases.len()]
    }

    /// Peak resident memory of the servers so far (summed over nodes), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.nodes.iter().map(|n| peak_rss_mib(n.0.id())).sum()
    }

    /// Peak resident memory of the SMSC simulator, in MiB (0 without one).
    pub fn smsc_peak_rss_mib(&self) -> f64 {
        self.smsc.as_ref().map_or(0.0, |s| peak_rss_mib(s.0.id()))
    }

    /// Peak resident memory of the private Redis, in MiB (0 without one).
    pub fn redis_peak_rss_mib(&self) -> f64 {
        match &self.redis {
            Some(BenchRedis::Own(r)) => r.pid().map_or(0.0, peak_rss_mib),
            _ => 0.0,
        }
    }

    /// Size of the data directory (the embedded store, or the private
    /// Redis's append-only file), in MiB.
    pub fn data_mib(&self) -> f64 {
        let bytes = match &self.redis {
            Some(BenchRedis::Own(r)) => dir_size_deep(r.dir()),
            Some(BenchRedis::External(_)) => 0,
            None => self
                .dir
                .as_ref()
                .map_or(0, |d| dir_size(&d.path().join("data"))),
        };
        bytes as f64 / (1024.0 * 1024.0)
    }
}

/// Bytes under `path`, one level of subdirectories deep (Redis keeps its
/// append-only files in `appendonlydir/`).
fn dir_size_deep(path: &Path) -> u64 {
    dir_size(path) + dir_size(&path.join("appendonlydir"))
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn create_key(exe: &Path, config: &Path) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .args(["apikey", "create", "--name", "bench", "--scopes", "all"])
        .env("HERALD_CONFIG", config)
        .output()
        .context("run herald apikey create")?;
    if !out.status.success() {
        bail!(
            "apikey create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}
