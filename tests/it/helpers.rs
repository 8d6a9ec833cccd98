//! `TestApp`: a real Herald gateway on 127.0.0.1:0 with its own data dir.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use herald::admin::{AdminRequest, AdminResponse, call_socket};
use herald::config::Config;
use herald::server::{Gateway, admin_socket_path};
use herald::testing::{eventually_some, within};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A running gateway and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// An API key with every scope.
    pub key: String,
    pub dir: TempDir,
    pub config: Config,
    gateway: Option<Gateway>,
}

/// Valid test numbers: distinct UK mobiles.
pub fn number(n: u32) -> String {
    herald::text::test_number(n).to_string()
}

impl TestApp {
    /// A gateway with the default sim connector.
    pub async fn spawn() -> TestApp {
        Self::spawn_with("").await
    }

    /// A gateway whose config is the defaults plus `extra` TOML (which may
    /// list its own `[[connectors]]`).
    pub async fn spawn_with(extra: &str) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_in(dir, extra).await
    }

    /// A gateway on an existing data dir (restart tests).
    pub async fn spawn_in(dir: TempDir, extra: &str) -> TestApp {
        Self::spawn_in_with_clock(dir, extra, std::sync::Arc::new(jiff::Timestamp::now)).await
    }

    /// A gateway whose scripts read `clock` as the time.
    pub async fn spawn_in_with_clock(
        dir: TempDir,
        extra: &str,
        clock: herald::script::Clock,
    ) -> TestApp {
        let config = test_config(&dir.path().join("herald.db"), extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gateway = Gateway::start_with_clock(config.clone(), listener, clock)
            .await
            .expect("gateway starts");
        let base = format!("http://{}", gateway.local_addr());
        let mut app = TestApp {
            base,
            client: reqwest::Client::new(),
            key: String::new(),
            dir,
            config,
            gateway: Some(gateway),
        };
        app.key = app.create_key("test-all", "all").await;
        app
    }

    /// A gateway on `redis` as node `node`, with the defaults plus `extra`.
    pub async fn spawn_on_redis(redis: &TestRedis, node: &str, extra: &str) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_in(dir, &format!("{}{extra}", redis.store_toml(node))).await
    }

    /// Creates an API key: through the running server's admin socket (the
    /// embedded store is held by the server), or directly in Redis.
    pub async fn create_key(&self, name: &str, scopes: &str) -> String {
        self.create_key_with_secret(name, scopes).await.0
    }

    /// Creates an API key and returns `(token, webhook secret)`.
    pub async fn create_key_with_secret(&self, name: &str, scopes: &str) -> (String, String) {
        let unique = format!("{name}-{}", herald::auth::random_hex(4).expect("rng"));
        let request = AdminRequest::ApiKeyCreate {
            name: unique,
            scopes: scopes.into(),
            senders: String::new(),
        };
        let response = if self.config.store.kind == herald::config::StoreKind::Redis {
            let store = herald::server::open_store(&self.config, herald::store::Role::Client)
                .await
                .expect("open redis store");
            let r = herald::admin::execute(&*store, &request).await;
            store.close().await;
            r
        } else {
            self.admin(request).await
        };
        match response {
            AdminResponse::Ok(text) => {
                let mut lines = text.lines();
                let token = lines.next().unwrap_or_default().to_string();
                let secret = lines
                    .next()
                    .and_then(|l| l.strip_prefix("webhook secret: "))
                    .unwrap_or_default()
                    .to_string();
                (token, secret)
            }
            AdminResponse::Err(e) => panic!("key not created: {e}"),
        }
    }

    pub async fn admin(&self, req: AdminRequest) -> AdminResponse {
        call_socket(&admin_socket_path(&self.config), &req)
            .await
            .expect("admin socket answers")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST JSON with the all-scopes key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_as(&self.key, path, body).await
    }

    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("request sent")
    }

    /// Sends one message and returns the 202 body.
    pub async fn send(&self, body: Value) -> Value {
        let r = self.post("/v1/messages", &body).await;
        let status = r.status();
        let v: Value = r.json().await.expect("json body");
        assert_eq!(status, 202, "send failed: {v}");
        v
    }

    /// A plain transactional message to test number `n`.
    pub async fn send_simple(&self, n: u32, class: &str) -> String {
        let v = self
            .send(json!({"to": number(n), "body": format!("message {n}"), "class": class}))
            .await;
        v["id"].as_str().expect("id").to_string()
    }

    pub async fn message(&self, id: &str) -> Value {
        let r = self.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(r.status(), 200, "get {id}");
        r.json().await.expect("json")
    }

    /// Polls until the message has a final status (or panics after `limit`).
    pub async fn wait_final(&self, id: &str, limit: Duration) -> Value {
        eventually_some(limit, &format!("message {id} final"), async || {
            let m = self.message(id).await;
            let status = m["status"].as_str().unwrap_or_default();
            (!matches!(status, "queued" | "submitted")).then_some(m)
        })
        .await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Begins a graceful shutdown without waiting for it (requests in flight
    /// go on; see [`TestApp::stop`]).
    pub fn begin_stop(&self) {
        if let Some(g) = &self.gateway {
            g.shutdown();
        }
    }

    /// `host:port` of the API.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// Graceful shutdown; returns the data dir for a restart.
    pub async fn stop(mut self) -> TempDir {
        if let Some(g) = self.gateway.take() {
            g.shutdown();
            g.wait().await.expect("no supervised task failed");
        }
        self.dir
    }

    /// The gateway's task supervisor.
    pub fn supervisor(&self) -> herald::supervise::Supervisor {
        self.gateway.as_ref().expect("running").supervisor().clone()
    }

    /// Waits until the gateway stopped by itself (a task failed) and
    /// returns why.
    pub async fn wait_stopped(mut self) -> Result<(), herald::supervise::TaskFailure> {
        let g = self.gateway.take().expect("running");
        within(Duration::from_secs(15), "the gateway stops", g.failed()).await;
        g.wait().await
    }
}

/// Defaults for tests: loopback port 0, data in `db`, quick maintenance.
pub fn test_config(db: &std::path::Path, extra: &str) -> Config {
    let has_connectors = extra.contains("[[connectors]]");
    let connectors = if has_connectors {
        String::new()
    } else {
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ndelay_ms = 5\n".to_string()
    };
    // Hermetic by default: the shipped scripts/ (quiet hours!) are not loaded
    // unless a test configures `[scripts]` itself.
    let scripts = if extra.contains("[scripts]") {
        ""
    } else {
        "[scripts]\nenabled = false\n"
    };
    // An `[http]` table in `extra` gets the listen address; TOML tables
    // cannot be opened twice. A test that configures its own `[store]`
    // (Redis) keeps it.
    let (http, extra) = if extra.contains("[http]\n") {
        (
            String::new(),
            extra.replacen("[http]\n", "[http]\nlisten = \"127.0.0.1:0\"\n", 1),
        )
    } else {
        (
            "[http]\nlisten = \"127.0.0.1:0\"\n".to_string(),
            extra.to_string(),
        )
    };
    let store = if extra.contains("[store]") {
        String::new()
    } else {
        format!("[store]\npath = \"{}\"\n", db.display())
    };
    let text = format!("{http}{store}{connectors}\n{scripts}{extra}");
    Config::from_toml(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// Path of the built `herald` binary.
pub fn herald_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald"))
}

/// A Redis for one test: its own `redis-server` on a free loopback port, or
/// the Redis named by `HERALD_TEST_REDIS_URL` with a key prefix of its own.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    pub server: Option<herald::bench::redis_server::RedisServer>,
    /// Whether the server fsyncs every write (else the tests accept loss).
    pub fsync_always: bool,
}

impl TestRedis {
    /// A Redis without persistence (or the shared one from the environment).
    pub fn start() -> TestRedis {
        if let Ok(url) = std::env::var("HERALD_TEST_REDIS_URL") {
            return TestRedis {
                url,
                prefix: format!("t{}", herald::auth::random_hex(6).expect("rng")),
                server: None,
                fsync_always: false,
            };
        }
        Self::own(herald::bench::redis_server::Persistence::None)
    }

    /// Always a private server (tests that stop and restart it).
    pub fn own(persistence: herald::bench::redis_server::Persistence) -> TestRedis {
        let server = herald::bench::redis_server::RedisServer::start(persistence)
            .unwrap_or_else(|e| panic!("this test needs Redis: {e}"));
        TestRedis {
            url: server.url(),
            prefix: "herald".into(),
            server: Some(server),
            fsync_always: persistence == herald::bench::redis_server::Persistence::AofAlways,
        }
    }

    /// The durability the stores opened on this Redis ask for: what it
    /// really has (test servers mostly run without persistence, for speed).
    pub fn durability(&self) -> herald::config::RedisDurability {
        if self.fsync_always {
            herald::config::RedisDurability::Always
        } else {
            herald::config::RedisDurability::AcceptLoss
        }
    }

    /// The server, for tests that stop or restart it.
    pub fn server(&mut self) -> &mut herald::bench::redis_server::RedisServer {
        self.server.as_mut().expect("a private redis-server")
    }

    /// `[store]` TOML for a gateway on this Redis.
    pub fn store_toml(&self, node_id: &str) -> String {
        format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\nnode_id = \"{node_id}\"\nlease_timeout = \"2s\"\nredis_durability = \"{}\"\n",
            self.url,
            self.prefix,
            if self.fsync_always {
                "always"
            } else {
                "accept_loss"
            }
        )
    }
}

/// An HTTP/1.1 request written by hand on its own connection, so a test can
/// stop in the middle of the body (a slow or stalled client).
pub struct RawRequest {
    stream: tokio::net::TcpStream,
}

impl RawRequest {
    /// Connects to `addr` and writes the head of a `method path` request
    /// with `headers` (each `Name: value`) and then `body_start`.
    pub async fn start(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[String],
        body_start: &[u8],
    ) -> RawRequest {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.write_all(body_start).await.expect("write body");
        stream.flush().await.expect("flush");
        RawRequest { stream }
    }

    /// Waits for `100 Continue` (sent with `Expect: 100-continue` in the
    /// head): the server is running the handler and reading the body.
    pub async fn wait_continue(&mut self, limit: Duration) {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") {
                let n = self.stream.read(&mut byte).await.expect("read");
                assert!(n > 0, "connection closed before 100 Continue");
                buf.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            assert!(head.starts_with("HTTP/1.1 100"), "not 100 Continue: {head}");
        };
        tokio::time::timeout(limit, read)
            .await
            .expect("100 Continue in time");
    }

    /// Writes more of the body.
    pub async fn send(&mut self, more: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(more).await.expect("write body");
        self.stream.flush().await.expect("flush");
    }

    /// Reads the response: status, headers (lower-case names) and JSON body.
    pub async fn response(mut self, limit: Duration) -> (u16, Vec<(String, String)>, Value) {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = self.stream.read(&mut chunk).await.expect("read");
                assert!(
                    n > 0,
                    "connection closed before a response: {:?}",
                    String::from_utf8_lossy(&buf)
                );
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let mut lines = head.lines();
            let status: u16 = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .expect("status line");
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .expect("content-length");
            while buf.len() < head_end + length {
                let n = self.stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body: Value = serde_json::from_slice(&buf[head_end..head_end + length])
                .unwrap_or_else(|e| panic!("body is not JSON ({e}): {head}"));
            (status, headers, body)
        };
        tokio::time::timeout(limit, read)
            .await
            .expect("response in time")
    }
}

/// A `herald serve` child process and the address it listens on.
pub struct Served {
    pub child: std::process::Child,
    pub base: String,
}

impl Served {
    /// POSTs `messages` as one batch with `key`; the accepted ids, in order.
    pub async fn send_batch(
        &self,
        client: &reqwest::Client,
        key: &str,
        messages: Vec<Value>,
    ) -> Vec<String> {
        let v: Value = client
            .post(format!("{}/v1/messages/batch", self.base))
            .bearer_auth(key)
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .expect("batch")
            .json()
            .await
            .expect("json");
        v["accepted"]
            .as_array()
            .expect("accepted")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_string())
            .collect()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `herald serve` (the built binary) on `config` and waits for it to
/// listen.
pub fn serve(config: &std::path::Path) -> Served {
    serve_logging(config, None, std::process::Stdio::null())
}

/// [`serve`] with `RUST_LOG` set to `rust_log` (when given) and the log
/// (stderr) sent to `log`.
pub fn serve_logging(
    config: &std::path::Path,
    rust_log: Option<&str>,
    log: std::process::Stdio,
) -> Served {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut command = Command::new(herald_bin());
    command
        .arg("serve")
        .env("HERALD_CONFIG", config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let addr = line
        .trim()
        .strip_prefix("herald listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    Served {
        child,
        base: format!("http://{addr}"),
    }
}

/// Creates an API key with every scope through `herald apikey create` on
/// `config` (the real CLI) and returns the token.
pub fn cli_api_key(config: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(herald_bin())
        .args(["apikey", "create", "--name", name, "--scopes", "all"])
        .env("HERALD_CONFIG", config)
        .output()
        .expect("run apikey");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
