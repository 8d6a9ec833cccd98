//! A `herald serve` child process for one scenario.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// A running server, killed on drop.
pub struct BenchServer {
    child: Child,
    pub base: String,
    pub key: String,
    dir: Option<tempfile::TempDir>,
}

impl BenchServer {
    /// Starts a server with a sim carrier of `tps` (0 = no cap), running the
    /// scripts and templates of `scripts` (a directory holding `scripts/`
    /// and `templates/`), or none.
    pub fn start(
        tps: u32,
        dlr_delay_ms: u64,
        window: usize,
        keep: bool,
        scripts: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("temp dir")?;
        let config = dir.path().join("herald.toml");
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
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n\
                 [store]\npath = \"{}\"\n\
                 [log]\nlevel = \"warn\"\n\
                 {scripts}\
                 [[connectors]]\nname = \"sim\"\nkind = \"sim\"\ntps = {tps}\nwindow = {window}\ndelay_ms = {dlr_delay_ms}\n",
                dir.path().join("data/herald.db").display()
            ),
        )?;
        let exe = std::env::current_exe().context("own executable")?;
        let key = create_key(&exe, &config)?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .env("HERALD_CONFIG", &config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn herald serve")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("herald listening on ") else {
            let _ = child.kill();
            bail!("server did not start: {line:?}");
        };
        let base = format!("http://{addr}");
        let dir = if keep {
            eprintln!("bench data kept in {}", dir.keep().display());
            None
        } else {
            Some(dir)
        };
        Ok(BenchServer {
            child,
            base,
            key,
            dir,
        })
    }

    /// Peak resident memory of the server so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Size of the data directory, in MiB.
    pub fn data_mib(&self) -> f64 {
        self.dir.as_ref().map_or(0.0, |d| {
            dir_size(&d.path().join("data")) as f64 / (1024.0 * 1024.0)
        })
    }
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

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
