//! The console test bench: the real `herald serve` binary on a free
//! loopback port, a `chromedriver` started on another, and a headless
//! Chromium driven through it. Every test saves a screenshot under
//! `target/console-screenshots/` (a CI artifact).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::herald_bin;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A password every test operator has.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running `herald serve` with its own data directory.
pub struct Server {
    pub base: String,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// Starts `herald serve` with the test defaults plus `extra` TOML.
    pub fn start(extra: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("herald.toml");
        let has_connectors = extra.contains("[[connectors]]");
        // The embedded store in the data dir, unless the test names one.
        let store = if extra.contains("[store]") {
            String::new()
        } else {
            format!(
                "[store]\npath = \"{}\"\n",
                dir.path().join("data/herald.db").display()
            )
        };
        // Hermetic unless the test configures scripts itself.
        let scripts = if extra.contains("[scripts]") {
            ""
        } else {
            "[scripts]\nenabled = false\n"
        };
        let connectors = if has_connectors {
            ""
        } else {
            "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ndelay_ms = 5\n"
        };
        std::fs::write(
            &config,
            format!("{store}[log]\nlevel = \"warn\"\n{scripts}{connectors}{extra}"),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .env("HERALD_CONFIG", &config)
            .env("HERALD__HTTP__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herald serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("herald listening on ")
            .unwrap_or_else(|| panic!("herald serve did not start: {line:?}"))
            .to_string();
        // Whatever else it prints is drained, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            base: format!("http://{addr}"),
            config,
            dir,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `herald ARGS` on this server's config (admin commands reach
    /// the running server through its socket), feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(herald_bin())
            .args(args)
            .env("HERALD_CONFIG", &self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("stdin");
        }
        let out = child.wait_with_output().expect("run herald");
        assert!(
            out.status.success(),
            "herald {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a console account with [`PASSWORD`].
    pub fn operator(&self, name: &str, role: &str) {
        self.cli(
            &["operator", "create", "--name", name, "--role", role],
            &format!("{PASSWORD}\n"),
        );
    }

    /// Creates an API key with every scope and returns its token.
    pub fn api_key(&self) -> String {
        let name = format!("console-test-{}", herald::auth::random_hex(4).expect("rng"));
        self.cli(
            &["apikey", "create", "--name", &name, "--scopes", "all"],
            "",
        )
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `chromedriver` in its own process group, so the browsers it starts go
/// with it.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the console tests need Chromium and its WebDriver: {CHROMIUM} and {CHROMEDRIVER} \
             (Debian packages `chromium` and `chromium-driver`; ./test installs them)"
        );
        let port = free_port();
        let log = std::fs::File::create(profile.join("chromedriver.log")).expect("log file");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let driver = Driver { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A headless Chromium on its own profile.
pub struct Browser {
    pub client: Client,
    /// The test's name: its screenshots are named after it.
    name: String,
    shots: u32,
    _profile: tempfile::TempDir,
    _driver: Driver,
}

impl Browser {
    /// A browser at desktop width.
    pub async fn start(name: &str) -> Browser {
        Self::start_sized(name, 1280, 900).await
    }

    /// A browser with a window of `width` × `height`.
    pub async fn start_sized(name: &str, width: u32, height: u32) -> Browser {
        Self::launch(name, width, height, true).await
    }

    /// A browser with JavaScript switched off: every page must still work.
    pub async fn start_without_javascript(name: &str) -> Browser {
        Self::launch(name, 1280, 900, false).await
    }

    async fn launch(name: &str, width: u32, height: u32, javascript: bool) -> Browser {
        let profile = tempfile::tempdir().expect("tempdir");
        let driver = Driver::start(profile.path());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().join("chrome").display()),
                ],
                "prefs": {
                    "profile.managed_default_content_settings.javascript":
                        if javascript { 1 } else { 2 }
                }
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        Browser {
            client,
            name: name.to_string(),
            shots: 0,
            _profile: profile,
            _driver: driver,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Waits (up to 10 s) for the element matching `css`.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Whether an element matching `css` is on the page now.
    pub async fn has(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|all| !all.is_empty())
            .unwrap_or(false)
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// Types `text` into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The path of the current page.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.path().to_string())
            .unwrap_or_default()
    }

    /// Waits until the page's path is `path`.
    pub async fn wait_path(&self, path: &str) {
        let started = Instant::now();
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "expected to be on {path}, still on {now}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element matching `css` has text containing `want`.
    pub async fn wait_text(&self, css: &str, want: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let now = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if now.contains(want) {
                return now;
            }
            assert!(
                started.elapsed() < limit,
                "{css} never showed {want:?}; it shows {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in as `name` with [`PASSWORD`] and waits for the console.
    pub async fn sign_in(&self, server: &Server, name: &str) {
        self.goto(&server.url("/console/login")).await;
        self.fill("#name", name).await;
        self.fill("#password", PASSWORD).await;
        self.click("#sign-in").await;
        self.wait_text("#signed-in-as", name, Duration::from_secs(10))
            .await;
    }

    /// Saves a screenshot as `target/console-screenshots/{test}-{n}-{label}.png`.
    pub async fn screenshot(&mut self, label: &str) -> PathBuf {
        self.shots += 1;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{}-{}-{label}.png", self.name, self.shots));
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the browser session.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
