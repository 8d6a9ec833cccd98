//! The binary's command line: config errors, environment overrides,
//! graceful shutdown on SIGTERM, admin commands with and without a server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::herald_bin;

fn config_in(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{}\"\n[log]\nlevel = \"warn\"\n[scripts]\nenabled = false\n{extra}",
            dir.join("data/herald.db").display()
        ),
    )
    .expect("write config");
    path
}

#[test]
fn a_bad_config_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "[dispatch]\nretry_base = \"soonish\"\n");
    let out = Command::new(herald_bin())
        .arg("serve")
        .env("HERALD_CONFIG", &config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dispatch.retry_base"), "{err}");

    let out = Command::new(herald_bin())
        .args(["serve", "--config", "/nonexistent/herald.toml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn environment_overrides_name_the_key_when_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "");
    let out = Command::new(herald_bin())
        .arg("serve")
        .env("HERALD_CONFIG", &config)
        .env("HERALD__MESSAGES__MAX_SEGMENTS", "lots")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("messages.max_segments") && err.contains("HERALD__"),
        "{err}"
    );
}

#[test]
fn sigterm_drains_and_exits_cleanly_and_admin_commands_reach_the_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "");
    // Created before the server runs: the CLI opens the store itself.
    let out = Command::new(herald_bin())
        .args(["apikey", "create", "--name", "before", "--scopes", "send"])
        .env("HERALD_CONFIG", &config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(herald_bin())
        .arg("serve")
        .env("HERALD_CONFIG", &config)
        // The listen address comes from the environment.
        .env("HERALD__HTTP__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(line.starts_with("herald listening on 127.0.0.1:"), "{line}");
    // While it runs, admin commands go through its socket.
    let out = Command::new(herald_bin())
        .args([
            "apikey", "create", "--name", "during", "--scopes", "otp,send",
        ])
        .env("HERALD_CONFIG", &config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hk_"));
    let out = Command::new(herald_bin())
        .args(["apikey", "list"])
        .env("HERALD_CONFIG", &config)
        .output()
        .expect("run");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("before") && list.contains("during"), "{list}");
    assert!(!list.contains("hk_"), "secrets must never be listed");
    let out = Command::new(herald_bin())
        .args(["apikey", "create", "--name", "during", "--scopes", "send"])
        .env("HERALD_CONFIG", &config)
        .output()
        .expect("run");
    assert!(!out.status.success(), "duplicate names are refused");

    let pid = i32::try_from(child.id()).expect("pid");
    let started = Instant::now();
    sigterm(pid);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    // The store is free again.
    let out = Command::new(herald_bin())
        .args(["apikey", "revoke", "during"])
        .env("HERALD_CONFIG", &config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sigterm(pid: i32) {
    // The kill(1) utility keeps this test free of unsafe code.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn connector_keys_are_overridden_from_the_environment_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(
        dir.path(),
        "[[connectors]]\nname = \"carrier-a\"\nkind = \"sim\"\n",
    );
    // Without the override the connector is ready…
    let ready = |envs: &[(&str, &str)]| -> (u16, String) {
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .env("HERALD_CONFIG", &config)
            .env("HERALD__HTTP__LISTEN", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let addr = line
            .trim()
            .strip_prefix("herald listening on ")
            .map(str::to_string);
        let answer = addr.map(|addr| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let r = reqwest::get(format!("http://{addr}/readyz"))
                    .await
                    .expect("readyz");
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            })
        });
        let _ = child.kill();
        let _ = child.wait();
        answer.unwrap_or_else(|| panic!("server did not start: {line:?}"))
    };
    assert_eq!(ready(&[]).0, 200);
    // …and `HERALD__CONNECTORS__<name>__<KEY>` reaches it (`-` written `_`).
    let (status, body) = ready(&[("HERALD__CONNECTORS__CARRIER_A__OFFLINE", "true")]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no connector is ready"), "{body}");
    // A wrong value stops start-up naming the entry, the key and the variable.
    let out = Command::new(herald_bin())
        .arg("serve")
        .env("HERALD_CONFIG", &config)
        .env("HERALD__CONNECTORS__0__WINDOW", "0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connectors[0].window"), "{err}");
    let out = Command::new(herald_bin())
        .arg("serve")
        .env("HERALD_CONFIG", &config)
        .env("HERALD__CONNECTORS__CARRIER_B__TPS", "5")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HERALD__CONNECTORS__CARRIER_B__TPS"), "{err}");
}

#[test]
fn bench_with_tiny_counts_reports_every_scenario_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("bench.json");
    let out = Command::new(herald_bin())
        .args([
            "bench",
            "--single-messages",
            "200",
            "--batch-messages",
            "2000",
            "--backlog",
            "2000",
            "--emergency-messages",
            "10",
            "--otp-count",
            "20",
            "--otp-backlog",
            "2000",
            "--recipients",
            "3000",
            "--json",
        ])
        .arg(&report)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("emergency head-of-line"), "{text}");
    assert!(text.contains("marketing queued:"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert!(v["machine"]["cpus"].as_u64().is_some_and(|n| n >= 1), "{v}");
    let scenarios = v["scenarios"].as_array().expect("scenarios");
    let by_name = |name: &str| {
        scenarios
            .iter()
            .find(|s| s["scenario"] == name)
            .unwrap_or_else(|| panic!("no {name} scenario: {v}"))
    };
    for (name, messages) in [("single", 200), ("batch", 2000)] {
        let s = by_name(name);
        assert_eq!(s["messages"], messages, "{s}");
        assert!(
            s["accept_to_receipt_per_sec"]
                .as_f64()
                .is_some_and(|r| r > 0.0),
            "{s}"
        );
        assert!(s["admission_latency"]["p99_ms"].as_f64().is_some(), "{s}");
        assert!(s["peak_rss_mib"].as_f64().is_some_and(|r| r > 0.0), "{s}");
    }
    let hol = by_name("hol");
    assert_eq!(hol["head_of_line"]["samples"], 10, "{hol}");
    assert!(hol["head_of_line"]["p99_ms"].as_f64().is_some(), "{hol}");
    let backlog = &hol["backlog"];
    assert_eq!(backlog["requested"], 2000, "{hol}");
    // The backlog was there when the emergencies were sent, and after.
    for field in ["queued_before_emergencies", "queued_after_emergencies"] {
        assert!(
            backlog[field].as_u64().is_some_and(|n| n >= 2000),
            "{field}: {hol}"
        );
    }
    // Every OTP was issued, verified (with a wrong code) and its SMS
    // submitted, past the marketing backlog.
    let otp = &by_name("otp")["otp"];
    assert_eq!(otp["issued"], 20, "{otp}");
    assert_eq!(otp["approved"], 0, "{otp}");
    for field in ["issue_latency", "verify_latency", "issue_to_submit"] {
        assert_eq!(otp[field]["samples"], 20, "{field}: {otp}");
    }
    for field in ["queued_before_first_otp", "queued_after_last_otp"] {
        assert!(
            otp[field].as_u64().is_some_and(|n| n >= 2000),
            "{field}: {otp}"
        );
    }
    // The broadcast reached every recipient, and its cancel added up.
    let b = &by_name("broadcast")["broadcast"];
    assert_eq!(b["recipients"], 3000, "{b}");
    assert_eq!(b["counters"]["delivered"], 3000, "{b}");
    assert!(b["first_submit_ms"].as_f64().is_some(), "{b}");
    assert_eq!(b["cancel"]["settled_adds_up"], true, "{b}");
}

#[tokio::test]
async fn otp_blocked_and_unblock_list_and_lift_prefix_blocks() {
    use herald::store::OtpStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    let store = herald::store::EmbeddedStore::open(&dir.path().join("data/herald.db"), 8 << 20)
        .expect("open");
    let until = herald::model::now_micros() + 3_600_000_000;
    store.block_prefix("44791", until).await.expect("block");
    herald::store::Store::close(&store).await;
    drop(store);
    let run = |args: &[&str]| {
        Command::new(herald_bin())
            .args(args)
            .env("HERALD_CONFIG", &config)
            .output()
            .expect("run")
    };
    let out = run(&["otp", "blocked"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.lines().any(|l| l.starts_with("44791\t")), "{listed}");
    let out = run(&["otp", "unblock", "44791"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["otp", "unblock", "44791"]);
    assert!(
        !out.status.success(),
        "a second unblock has nothing to lift"
    );
    let out = run(&["otp", "blocked"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("44791"));
}

/// Runs `herald operator ARGS` on `config` with `stdin` as its input.
fn operator_cmd(config: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(herald_bin())
        .arg("operator")
        .args(args)
        .env("HERALD_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("run")
}

#[test]
fn operator_accounts_are_managed_with_and_without_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), "");
    // Before the server runs: the CLI opens the store itself.
    let out = operator_cmd(
        &config,
        &["create", "--name", "alice", "--role", "operator"],
        "correct horse battery\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Too short a password, or an unknown role, is refused.
    let out = operator_cmd(
        &config,
        &["create", "--name", "eve", "--role", "operator"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = operator_cmd(
        &config,
        &["create", "--name", "eve", "--role", "root"],
        "long enough password\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("role"));

    let mut child = Command::new(herald_bin())
        .arg("serve")
        .env("HERALD_CONFIG", &config)
        .env("HERALD__HTTP__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(line.starts_with("herald listening on 127.0.0.1:"), "{line}");
    // While it runs, the commands go through its admin socket.
    let out = operator_cmd(
        &config,
        &["create", "--name", "bob", "--role", "approver"],
        "another long password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = operator_cmd(
        &config,
        &["create", "--name", "bob", "--role", "admin"],
        "another long password\n",
    );
    assert!(!out.status.success(), "duplicate names are refused");
    let out = operator_cmd(&config, &["list"], "");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("alice\toperator") && list.contains("bob\tapprover"),
        "{list}"
    );
    assert!(!list.contains("argon2"), "hashes are never listed");
    let out = operator_cmd(&config, &["disable", "bob"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = operator_cmd(&config, &["disable", "nobody"], "");
    assert!(!out.status.success());

    let pid = i32::try_from(child.id()).expect("pid");
    sigterm(pid);
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
    let out = operator_cmd(&config, &["list"], "");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("bob\tapprover") && list.contains("disabled"),
        "{list}"
    );
}
