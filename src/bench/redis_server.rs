//! A private `redis-server` child process on a free loopback port, for the
//! benchmark and the test suite (isolated: its own port and directory, so
//! parallel runs never share data).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the child persists its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk (fastest; a restart loses everything).
    None,
    /// Append-only file, fsynced every second (Redis's default AOF).
    AofEverySec,
    /// Append-only file, fsynced on every write: nothing acknowledged is
    /// lost even if Redis itself is killed.
    AofAlways,
}

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    #[error(
        "cannot run `redis-server` ({0}); install it (Debian: apt-get install redis-server) \
         or point HERALD_TEST_REDIS_URL at a Redis for the tests that allow it"
    )]
    Missing(std::io::Error),
    #[error("redis-server did not start: {0}")]
    Start(String),
}

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistence: Persistence,
}

impl RedisServer {
    /// Starts a server on a free 127.0.0.1 port.
    ///
    /// # Errors
    /// When `redis-server` is not installed or does not come up.
    pub fn start(persistence: Persistence) -> Result<RedisServer, RedisServerError> {
        let dir = tempfile::tempdir().map_err(|e| RedisServerError::Start(e.to_string()))?;
        let mut last = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port().map_err(|e| RedisServerError::Start(e.to_string()))?;
            match spawn(dir.path(), port, persistence) {
                Ok(child) => {
                    return Ok(RedisServer {
                        child: Some(child),
                        port,
                        dir,
                        persistence,
                    });
                }
                Err(RedisServerError::Start(e)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(RedisServerError::Start(last))
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its data directory (the AOF lives here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it cleanly (`SHUTDOWN`: the AOF is flushed and fsynced).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(client) = ::redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1))
            {
                // The server closes the connection instead of answering.
                let _ = ::redis::cmd("SHUTDOWN").query::<()>(&mut conn);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (after `stop`/`kill`).
    ///
    /// # Errors
    /// When it does not come up (e.g. the port was taken meanwhile).
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill();
        self.child = Some(spawn(self.dir.path(), self.port, self.persistence)?);
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(dir: &Path, port: u16, persistence: Persistence) -> Result<Child, RedisServerError> {
    let (aof, fsync) = match persistence {
        Persistence::None => ("no", "everysec"),
        Persistence::AofEverySec => ("yes", "everysec"),
        Persistence::AofAlways => ("yes", "always"),
    };
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--dir")
        .arg(PathBuf::from(dir))
        .args(["--save", "", "--appendonly", aof, "--appendfsync", fsync])
        .args(["--protected-mode", "yes", "--loglevel", "warning"])
        .args(["--logfile", "redis.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(RedisServerError::Missing)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            return Err(RedisServerError::Start(format!(
                "exited with {status}: {}",
                log.lines().last().unwrap_or_default()
            )));
        }
        if answers_ping(port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RedisServerError::Start(format!(
                "no answer on port {port} within 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a server on `port` answers PING (one loading its AOF does not yet).
fn answers_ping(port: u16) -> bool {
    let Ok(client) = ::redis::Client::open(format!("redis://127.0.0.1:{port}/0")) else {
        return false;
    };
    client
        .get_connection_with_timeout(Duration::from_millis(500))
        .and_then(|mut conn| ::redis::cmd("PING").query::<String>(&mut conn))
        .is_ok_and(|pong| pong == "PONG")
}
