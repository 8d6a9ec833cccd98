//! Operator scripts and templates over real HTTP: routing by prefix,
//! failover past a connector that is down, rejection, quiet-hours deferral,
//! template locales, hot reload (good and broken edits), hostile scripts,
//! and `herald serve` / `herald script` on the shipped files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald::testing::eventually_async;
use serde_json::{Value, json};

use crate::helpers::{TestApp, herald_bin, number};

/// A UK mobile (the test numbers of `number()` are all +1).
const UK: &str = "+447400123456";

/// Two simulated carriers, `uk` and `us`; `uk` is the default route.
const TWO_CARRIERS: &str = "[[connectors]]\nname = \"uk\"\nkind = \"sim\"\ndelay_ms = 5\n\
                            [[connectors]]\nname = \"us\"\nkind = \"sim\"\ndelay_ms = 5\n";

/// A gateway whose `scripts/` and `templates/` hold `files` (paths relative
/// to the data dir, e.g. `scripts/route.rhai`), reloading 50 ms after edits.
async fn spawn_with_scripts(files: &[(&str, &str)], extra: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("scripts")).expect("scripts dir");
    std::fs::create_dir(dir.path().join("templates")).expect("templates dir");
    for (path, text) in files {
        std::fs::write(dir.path().join(path), text).expect("write script");
    }
    let scripts = format!(
        "[scripts]\ndir = \"{}\"\ntemplates_dir = \"{}\"\ndebounce = \"50ms\"\n",
        dir.path().join("scripts").display(),
        dir.path().join("templates").display()
    );
    TestApp::spawn_in(dir, &format!("{scripts}{extra}")).await
}

fn write(app: &TestApp, path: &str, text: &str) {
    std::fs::write(app.dir.path().join(path), text).expect("write script");
}

async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.post("/v1/messages", &body).await;
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

async fn connector_of(app: &TestApp, accepted: &Value) -> String {
    let id = accepted["id"].as_str().expect("id");
    let m = app.wait_final(id, Duration::from_secs(10)).await;
    assert_eq!(m["status"], "delivered", "{m}");
    m["connector"].as_str().unwrap_or_default().to_string()
}

async fn readyz(app: &TestApp) -> Value {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json")
}

const PREFIX_ROUTE: &str = r#"
fn route(msg) {
    if msg.to.starts_with("+44") { "uk" } else { ["us", "uk"] }
}
"#;

#[tokio::test]
async fn routing_by_prefix_picks_the_connector() {
    let app = spawn_with_scripts(&[("scripts/route.rhai", PREFIX_ROUTE)], TWO_CARRIERS).await;
    let uk = app.send(json!({"to": UK, "body": "hello UK"})).await;
    let us = app.send(json!({"to": number(1), "body": "hello US"})).await;
    assert_eq!(connector_of(&app, &uk).await, "uk");
    assert_eq!(connector_of(&app, &us).await, "us");
}

#[tokio::test]
async fn failover_skips_a_connector_that_is_down() {
    let app = spawn_with_scripts(
        &[(
            "scripts/route.rhai",
            r#"fn route(msg) { if connector_ready("primary") { throw "primary should be down"; } ["primary", "backup"] }"#,
        )],
        "[[connectors]]\nname = \"primary\"\nkind = \"sim\"\noffline = true\n\
         [[connectors]]\nname = \"backup\"\nkind = \"sim\"\ndelay_ms = 5\n",
    )
    .await;
    let accepted = app.send(json!({"to": number(2), "body": "failover"})).await;
    assert_eq!(connector_of(&app, &accepted).await, "backup");
    assert!(
        !app.metrics().await.contains("herald_script_errors_total{"),
        "the script saw primary down and routed without error"
    );
}

/// An `smpp` connector to the simulator `sim`.
fn smpp_to(name: &str, sim: &herald::smsc_sim::SmscSim) -> String {
    format!(
        "[[connectors]]\nname = \"{name}\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"herald\"\npassword = \"pw\"\nwindow = 8\nreconnect_min = \"20ms\"\n\
         reconnect_max = \"200ms\"\n",
        sim.local_addr().port()
    )
}

#[tokio::test]
async fn a_permanent_submit_error_on_the_primary_fails_the_message_over_to_the_backup() {
    use herald::smsc_sim::{SimConfig, SmscSim};
    let sim = |_| async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        SmscSim::start(
            listener,
            SimConfig {
                dlr_delay: Duration::from_millis(5),
                ..SimConfig::default()
            },
        )
        .await
    };
    let (primary, backup) = (sim(0).await, sim(1).await);
    // Up and bound, but it refuses every destination (ESME_RINVDSTADR).
    primary.set_reject_submits(true);
    let app = spawn_with_scripts(
        &[(
            "scripts/route.rhai",
            r#"fn route(msg) { ["primary", "backup"] }"#,
        )],
        &format!(
            "{}{}",
            smpp_to("primary", &primary),
            smpp_to("backup", &backup)
        ),
    )
    .await;
    // Both binds up, so admission keeps the script's order.
    eventually_async(Duration::from_secs(10), "both connectors bound", || async {
        primary.stats().binds >= 1 && backup.stats().binds >= 1
    })
    .await;
    let accepted = app
        .send(json!({"to": number(43), "body": "failover at submit"}))
        .await;
    let id = accepted["id"].as_str().expect("id");
    let m = app.wait_final(id, Duration::from_secs(15)).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["connector"], "backup", "{m}");
    assert!(primary.stats().rejected >= 1, "the primary was tried first");
    assert!(primary.submitted().is_empty());
    let to = number(43);
    assert!(
        backup
            .submitted()
            .iter()
            .any(|s| format!("+{}", s.destination_addr) == to),
        "the backup carried it"
    );
    assert!(
        app.metrics()
            .await
            .contains(r#"herald_submit_errors_total{connector="primary",kind="permanent"} 1"#)
    );
    app.stop().await;
    primary.shutdown().await;
    backup.shutdown().await;
}

#[tokio::test]
async fn a_rejecting_route_is_422_with_the_reason_also_per_batch_item() {
    let app = spawn_with_scripts(
        &[(
            "scripts/route.rhai",
            r#"fn route(msg) { if "blocked" in msg.tags { reject("this sender is blocked"); } () }"#,
        )],
        "",
    )
    .await;
    let (status, v) = post(
        &app,
        json!({"to": number(3), "body": "x", "tags": ["blocked"]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "rejected_by_route");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("this sender is blocked"),
        "{v}"
    );
    let r = app
        .post(
            "/v1/messages/batch",
            &json!({"messages": [
                {"to": number(4), "body": "ok"},
                {"to": number(5), "body": "no", "tags": ["blocked"]},
            ]}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["accepted"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["rejected"][0]["index"], 1);
    assert_eq!(v["rejected"][0]["error"]["code"], "rejected_by_route");
}

fn timestamp(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[tokio::test]
async fn a_deferral_holds_the_message_until_its_time_then_it_is_delivered() {
    let app = spawn_with_scripts(
        &[(
            "scripts/route.rhai",
            r#"
            fn on_submit(msg) {
                if msg.class == "marketing" {
                    msg.not_before = unix_now() + 2;
                }
                msg
            }
            "#,
        )],
        "",
    )
    .await;
    let marketing = app
        .send(json!({"to": number(6), "body": "Sale!", "class": "marketing"}))
        .await;
    let transactional = app
        .send(json!({"to": number(7), "body": "Receipt", "class": "transactional"}))
        .await;
    let id = marketing["id"].as_str().expect("id");
    // Stored with its deferral: between 1 and 2 s (whole Unix seconds) away.
    let m = app.message(id).await;
    assert_eq!(m["status"], "queued", "{m}");
    assert!(m["submitted_at"].is_null(), "{m}");
    let held =
        timestamp(&m["not_before"]).as_microsecond() - timestamp(&m["created_at"]).as_microsecond();
    assert!(
        (1_000_000..=2_000_000).contains(&held),
        "held {held} µs: {m}"
    );
    // Other classes are not held.
    let t = app
        .wait_final(
            transactional["id"].as_str().expect("id"),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(t["status"], "delivered");
    assert!(t.get("not_before").is_none(), "{t}");
    // Once its time has come, the held message goes out.
    let done = app.wait_final(id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "delivered", "{done}");
    assert!(
        timestamp(&done["submitted_at"]) >= timestamp(&done["not_before"]),
        "submitted before its time: {done}"
    );
}

/// A gateway running the shipped `scripts/` and `templates/`, whose scripts
/// see the time as `at`.
async fn spawn_shipped_at(at: jiff::Timestamp) -> TestApp {
    let scripts = format!(
        "[scripts]\ndir = \"{}\"\ntemplates_dir = \"{}\"\nwatch = false\n",
        repo().join("scripts").display(),
        repo().join("templates").display()
    );
    TestApp::spawn_in_with_clock(
        tempfile::tempdir().expect("tempdir"),
        &scripts,
        std::sync::Arc::new(move || at),
    )
    .await
}

/// The next `hour:minute` in London from now, and the 08:00 that follows it.
fn next_london(hour: i8, minute: i8) -> (jiff::Timestamp, jiff::Timestamp) {
    let london = jiff::tz::TimeZone::get("Europe/London").expect("zone");
    let now = jiff::Timestamp::now().to_zoned_datetime(london.clone());
    let at = |date: jiff::civil::Date, h: i8, m: i8| {
        date.at(h, m, 0, 0)
            .to_zoned_datetime(london.clone())
            .expect("local time")
    };
    let mut when = at(now.date(), hour, minute);
    if when.timestamp() <= now.timestamp() {
        when = at(now.date().tomorrow().expect("date"), hour, minute);
    }
    let mut eight = at(when.date(), 8, 0);
    if eight.timestamp() <= when.timestamp() {
        eight = at(when.date().tomorrow().expect("date"), 8, 0);
    }
    (when.timestamp(), eight.timestamp())
}

#[tokio::test]
async fn the_shipped_quiet_hours_hold_uk_marketing_at_night_until_eight() {
    let (night, eight) = next_london(22, 30);
    let app = spawn_shipped_at(night).await;
    // Long enough a validity to outlast the night.
    let marketing = app
        .send(json!({"to": UK, "body": "Sale!", "class": "marketing", "validity_seconds": 172_800}))
        .await;
    let m = app.message(marketing["id"].as_str().expect("id")).await;
    assert_eq!(m["status"], "queued", "{m}");
    assert_eq!(
        timestamp(&m["not_before"]),
        eight,
        "held until 08:00 London: {m}"
    );
    let receipt = app
        .send(json!({"to": UK, "body": "Receipt", "class": "transactional"}))
        .await;
    let t = app
        .wait_final(receipt["id"].as_str().expect("id"), Duration::from_secs(10))
        .await;
    assert_eq!(t["status"], "delivered", "transactional is not held: {t}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = app.message(marketing["id"].as_str().expect("id")).await;
    assert_eq!(m["status"], "queued", "still held: {m}");
    // A marketing message whose deferral would outlast its validity is refused.
    let (status, v) = post(
        &app,
        json!({"to": "+447400123457", "body": "Sale!", "class": "marketing", "validity_seconds": 600}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "rejected_by_route");
}

#[tokio::test]
async fn the_shipped_quiet_hours_let_uk_marketing_through_at_noon() {
    let (noon, _) = next_london(12, 0);
    let app = spawn_shipped_at(noon).await;
    let marketing = app
        .send(json!({"to": UK, "body": "Sale!", "class": "marketing"}))
        .await;
    let m = app
        .wait_final(
            marketing["id"].as_str().expect("id"),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert!(m.get("not_before").is_none(), "{m}");
}

#[tokio::test]
async fn a_deferral_past_the_validity_is_refused() {
    let app = spawn_with_scripts(
        &[(
            "scripts/route.rhai",
            "fn on_submit(msg) { msg.not_before = unix_now() + 7200; msg }",
        )],
        "",
    )
    .await;
    let (status, v) = post(
        &app,
        json!({"to": number(8), "body": "x", "class": "marketing", "validity_seconds": 600}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "rejected_by_route");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("validity")
    );
}

const OTP_TEMPLATES: [(&str, &str); 3] = [
    ("templates/otp.rhai", "`Your ${app_name} code is ${code}`"),
    (
        "templates/otp.es.rhai",
        "`Tu código de ${app_name} es ${code}`",
    ),
    (
        "templates/otp.es-MX.rhai",
        "`Tu código de ${app_name} es ${code}. ¡No lo compartas con nadie, nunca, por ningún motivo, ni siquiera con nosotros!`",
    ),
];

#[tokio::test]
async fn templates_render_the_body_with_locale_fallback() {
    let app = spawn_with_scripts(&OTP_TEMPLATES, "").await;
    let vars = json!({"app_name": "Herald", "code": "123456"});
    // Distinct recipients: OTP is limited per recipient.
    let send = |n: u32, locale: Option<&str>| {
        let mut body = json!({"to": number(n), "template": "otp", "vars": vars, "class": "otp"});
        if let Some(l) = locale {
            body["locale"] = json!(l);
        }
        body
    };
    // The encoding and segments tell the variants apart: the default is
    // GSM-7, Spanish has 'ó' (UCS-2), es-MX is longer than one UCS-2 segment.
    let default = app.send(send(90, None)).await;
    assert_eq!(
        (default["encoding"].as_str(), default["segments"].as_u64()),
        (Some("gsm7"), Some(1))
    );
    let es = app.send(send(91, Some("es-AR"))).await;
    assert_eq!(
        (es["encoding"].as_str(), es["segments"].as_u64()),
        (Some("ucs2"), Some(1))
    );
    let mx = app.send(send(92, Some("es-MX"))).await;
    assert_eq!(
        (mx["encoding"].as_str(), mx["segments"].as_u64()),
        (Some("ucs2"), Some(2))
    );
    let fr = app.send(send(93, Some("fr"))).await;
    assert_eq!(fr["encoding"], "gsm7");
    assert_eq!(connector_of(&app, &mx).await, "sim");
}

#[tokio::test]
async fn template_errors_are_422_naming_the_template_or_variable() {
    let app = spawn_with_scripts(
        &[
            OTP_TEMPLATES[0],
            ("templates/huge.rhai", "`${ \"x\".pad(100000000, \"y\") }`"),
        ],
        "",
    )
    .await;
    let cases = [
        (
            json!({"to": number(10), "template": "nope", "vars": {}}),
            "unknown_template",
            "nope",
        ),
        (
            json!({"to": number(10), "template": "otp", "vars": {"app_name": "H"}}),
            "missing_variable",
            "code",
        ),
        (
            json!({"to": number(10), "template": "otp", "body": "x", "vars": {}}),
            "invalid_field",
            "body",
        ),
        (
            json!({"to": number(10), "template": "otp", "vars": {}, "locale": "../x"}),
            "invalid_locale",
            "locale",
        ),
        (
            json!({"to": number(10), "template": "huge", "vars": {}}),
            "template_error",
            "huge",
        ),
    ];
    for (body, code, named) in cases {
        let (status, v) = post(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(named),
            "{body}: {v}"
        );
    }
    assert!(
        app.metrics()
            .await
            .contains(r#"herald_script_errors_total{script="templates/huge.rhai",kind="size"} 1"#),
        "the runaway template is counted"
    );
}

#[tokio::test]
async fn hot_reload_picks_up_good_edits_and_keeps_serving_through_broken_ones() {
    let app = spawn_with_scripts(
        &[("scripts/route.rhai", r#"fn route(msg) { "uk" }"#)],
        TWO_CARRIERS,
    )
    .await;
    let first = app.send(json!({"to": number(11), "body": "one"})).await;
    assert_eq!(connector_of(&app, &first).await, "uk");

    // A good edit is picked up without a restart.
    write(&app, "scripts/route.rhai", r#"fn route(msg) { "us" }"#);
    eventually_async(
        Duration::from_secs(10),
        "the edited route serves",
        || async {
            let v = app.send(json!({"to": number(12), "body": "two"})).await;
            connector_of(&app, &v).await == "us"
        },
    )
    .await;

    // A broken edit is not loaded: the previous version keeps serving, and
    // /readyz and the metrics report it with file:line.
    write(
        &app,
        "scripts/route.rhai",
        "fn route(msg) {\n    \"uk\"\n    let = ;\n}\n",
    );
    eventually_async(
        Duration::from_secs(10),
        "readyz reports the error",
        || async {
            let v = readyz(&app).await;
            v["warnings"].as_array().is_some_and(|w| {
                w.iter()
                    .any(|p| p.as_str().unwrap_or_default().contains("route.rhai:3:"))
            })
        },
    )
    .await;
    let v = readyz(&app).await;
    assert_eq!(
        v["status"], "ok",
        "a broken script does not make the node unready: {v}"
    );
    let after = app.send(json!({"to": number(13), "body": "three"})).await;
    assert_eq!(
        connector_of(&app, &after).await,
        "us",
        "previous version serves"
    );
    let metrics = app.metrics().await;
    // Counted once per failed load: the watcher and the periodic rescan
    // may both see the broken version on a busy machine.
    let compile_errors = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"herald_script_errors_total{script="scripts/route.rhai",kind="compile"} "#,
            )
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(compile_errors >= 1.0, "{metrics}");
    assert!(metrics.contains("herald_scripts_broken 1"), "{metrics}");

    // Fixing it clears the warning.
    write(&app, "scripts/route.rhai", r#"fn route(msg) { "uk" }"#);
    eventually_async(Duration::from_secs(10), "the fix is loaded", || async {
        readyz(&app).await.get("warnings").is_none()
    })
    .await;
    let fixed = app.send(json!({"to": number(14), "body": "four"})).await;
    assert_eq!(connector_of(&app, &fixed).await, "uk");
}

/// `herald_script_reloads_total`: loads of the script directories so far.
async fn reloads(app: &TestApp) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_script_reloads_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no reload counter in {metrics}"))
}

#[tokio::test]
async fn an_idle_gateway_does_not_reload_and_one_edit_reloads_once() {
    let app = spawn_with_scripts(
        &[
            ("scripts/route.rhai", r#"fn route(msg) { "uk" }"#),
            OTP_TEMPLATES[0],
        ],
        TWO_CARRIERS,
    )
    .await;
    // Traffic runs the scripts; the watcher reads them when it starts.
    let first = app.send(json!({"to": number(16), "body": "idle"})).await;
    assert_eq!(connector_of(&app, &first).await, "uk");
    let at_rest = reloads(&app).await;
    // Idle across many debounce periods (50 ms) and a rescan (2 s): reading
    // the files must not count as changing them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reloads(&app).await,
        at_rest,
        "reloaded while nothing changed"
    );
    write(&app, "scripts/route.rhai", r#"fn route(msg) { "us" }"#);
    eventually_async(
        Duration::from_secs(10),
        "the edit is reloaded",
        async || reloads(&app).await > at_rest,
    )
    .await;
    // Long enough for a reload set off by its own reads to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reloads(&app).await, at_rest + 1, "one edit, one reload");
    let after = app.send(json!({"to": number(17), "body": "edited"})).await;
    assert_eq!(connector_of(&app, &after).await, "us");
}

#[tokio::test]
async fn templates_are_hot_reloaded_too() {
    let app = spawn_with_scripts(&[OTP_TEMPLATES[0]], "").await;
    let body = json!({"to": number(15), "template": "otp", "vars": {"app_name": "H", "code": "1"}, "locale": "es"});
    assert_eq!(app.send(body.clone()).await["encoding"], "gsm7");
    write(&app, "templates/otp.es.rhai", "`Tu código es ${code}`");
    eventually_async(Duration::from_secs(10), "the new locale serves", || async {
        app.send(body.clone()).await["encoding"] == "ucs2"
    })
    .await;
}

/// A gateway whose `[scripts]` point at `scripts` and `templates` under its
/// data dir, set up by `prepare` (which may leave them missing).
async fn spawn_with_layout(prepare: impl FnOnce(&Path)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(dir.path());
    let scripts = format!(
        "[scripts]\ndir = \"{}\"\ntemplates_dir = \"{}\"\ndebounce = \"50ms\"\n",
        dir.path().join("scripts").display(),
        dir.path().join("templates").display()
    );
    TestApp::spawn_in(dir, &format!("{scripts}{TWO_CARRIERS}")).await
}

async fn routes_to(app: &TestApp, n: u32, want: &str) {
    eventually_async(
        Duration::from_secs(15),
        &format!("routes to {want}"),
        || async {
            let v = app.send(json!({"to": number(n), "body": "reload"})).await;
            connector_of(app, &v).await == want
        },
    )
    .await;
}

#[tokio::test]
async fn hot_reload_survives_the_scripts_directory_being_replaced() {
    let app = spawn_with_scripts(
        &[("scripts/route.rhai", r#"fn route(msg) { "uk" }"#)],
        TWO_CARRIERS,
    )
    .await;
    routes_to(&app, 50, "uk").await;
    // Deploy a new version the atomic way: build it aside, swap it in.
    let root = app.dir.path();
    std::fs::create_dir(root.join("scripts.new")).expect("dir");
    std::fs::write(
        root.join("scripts.new/route.rhai"),
        r#"fn route(msg) { "us" }"#,
    )
    .expect("write");
    std::fs::rename(root.join("scripts"), root.join("scripts.old")).expect("mv old");
    std::fs::rename(root.join("scripts.new"), root.join("scripts")).expect("mv new");
    routes_to(&app, 51, "us").await;
    // Edits in the new directory are seen too…
    write(&app, "scripts/route.rhai", r#"fn route(msg) { "uk" }"#);
    routes_to(&app, 52, "uk").await;
    // …and the old one is no longer what serves.
    std::fs::write(
        root.join("scripts.old/route.rhai"),
        r#"fn route(msg) { throw "old"; }"#,
    )
    .expect("write");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = app.send(json!({"to": number(58), "body": "x"})).await;
    assert_eq!(connector_of(&app, &v).await, "uk");
    assert!(!app.metrics().await.contains("herald_script_errors_total{"));
}

#[tokio::test]
async fn hot_reload_follows_a_symlink_swap() {
    let app = spawn_with_layout(|root| {
        for (v, to) in [("v1", "uk"), ("v2", "us")] {
            std::fs::create_dir(root.join(v)).expect("dir");
            std::fs::write(
                root.join(v).join("route.rhai"),
                format!("fn route(msg) {{ \"{to}\" }}"),
            )
            .expect("write");
        }
        std::os::unix::fs::symlink(root.join("v1"), root.join("scripts")).expect("link");
    })
    .await;
    routes_to(&app, 53, "uk").await;
    let root = app.dir.path();
    std::os::unix::fs::symlink(root.join("v2"), root.join("scripts.tmp")).expect("link");
    std::fs::rename(root.join("scripts.tmp"), root.join("scripts")).expect("swap");
    routes_to(&app, 54, "us").await;
}

#[tokio::test]
async fn a_scripts_directory_created_after_start_is_picked_up() {
    let app = spawn_with_layout(|_| {}).await;
    assert_eq!(
        connector_of(
            &app,
            &app.send(json!({"to": number(55), "body": "x"})).await
        )
        .await,
        "uk"
    );
    let root = app.dir.path();
    std::fs::create_dir(root.join("scripts")).expect("dir");
    std::fs::write(root.join("scripts/route.rhai"), r#"fn route(msg) { "us" }"#).expect("write");
    routes_to(&app, 56, "us").await;
    std::fs::create_dir(root.join("templates")).expect("dir");
    std::fs::write(root.join("templates/hi.rhai"), "`Hi ${name}`").expect("write");
    eventually_async(
        Duration::from_secs(15),
        "the new template serves",
        || async {
            post(
                &app,
                json!({"to": number(57), "template": "hi", "vars": {"name": "Ann"}}),
            )
            .await
            .0 == 202
        },
    )
    .await;
}

/// One script with every hostile behaviour, chosen by tag.
const HOSTILE: &str = r#"
fn deeper(n) { deeper(n + 1) }
fn route(msg) {
    let what = msg.tags[0];
    if what == "loop" { loop { } }
    if what == "spin" { let x = 0; while true { x += 1; } }
    if what == "recursion" { deeper(0); }
    if what == "string" { let s = "xxxxxxxx"; loop { s += s; } }
    if what == "array" { let a = []; a.pad(100000000, 0); }
    if what == "map" { let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; } }
    if what == "map_passed" { let m = #{}; for i in 0..2000 { m[`k${i}`] = i; } return m.len(); }
    if what == "fn_eval" { return Fn("eval").call("\"us\""); }
    if what == "fn_eval_built" { let f = Fn("ev" + "al"); return call(f, "\"us\""); }
    if what == "file" { open_file("/etc/passwd"); }
    if what == "process" { system("id"); }
    if what == "sleep" { sleep(30); }
    if what == "throw" { throw "boom"; }
    "us"
}
"#;

#[tokio::test]
async fn hostile_scripts_are_stopped_within_their_bounds_and_the_gateway_keeps_serving() {
    let app = spawn_with_scripts(&[("scripts/route.rhai", HOSTILE)], TWO_CARRIERS).await;
    // Unbounded work stops at max_operations, or at the wall time when the
    // machine is slow enough to reach that first (map growth in a debug
    // build does): either bound is the sandbox working.
    const WORK: &[&str] = &["operations", "timeout"];
    let cases: [(&str, &[&str]); 13] = [
        ("loop", WORK),
        ("spin", WORK),
        ("recursion", &["call_depth"]),
        ("string", &["size"]),
        ("array", &["size"]),
        // Growth in place is bounded by the work limits; max_map_len is
        // enforced once the map is passed to a function (the 2,000 inserts
        // before that can outlast the wall time on a loaded machine).
        ("map", WORK),
        ("map_passed", &["size", "timeout"]),
        // eval stays out of reach through a function pointer, even one
        // whose name is built at run time.
        ("fn_eval", &["runtime"]),
        ("fn_eval_built", &["runtime"]),
        ("file", &["runtime"]),
        ("process", &["runtime"]),
        ("sleep", &["runtime"]),
        ("throw", &["runtime"]),
    ];
    let errors = |metrics: &str, kinds: &[&str]| -> u64 {
        kinds
            .iter()
            .filter_map(|kind| {
                let prefix = format!(
                    "herald_script_errors_total{{script=\"scripts/route.rhai\",kind=\"{kind}\"}} "
                );
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    };
    for (i, (what, kinds)) in cases.iter().enumerate() {
        let before = errors(&app.metrics().await, kinds);
        let started = Instant::now();
        let v = app
            .send(json!({"to": number(20 + i as u32), "body": "x", "tags": [what]}))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert_eq!(connector_of(&app, &v).await, "uk", "{what}: default route");
        let metrics = app.metrics().await;
        assert_eq!(
            errors(&metrics, kinds),
            before + 1,
            "{what}: counted once as {kinds:?}:\n{metrics}"
        );
    }
    // The same script still routes well-behaved messages.
    let ok = app
        .send(json!({"to": number(40), "body": "fine", "tags": ["none"]}))
        .await;
    assert_eq!(connector_of(&app, &ok).await, "us");
    assert_eq!(readyz(&app).await["status"], "ok");
}

#[tokio::test]
async fn a_script_over_its_wall_time_is_stopped_and_the_default_route_used() {
    let app = spawn_with_scripts(
        &[(
            "scripts/route.rhai",
            "fn route(msg) { let x = 0; loop { x += 1; } }",
        )],
        "max_operations = 1000000000\ntimeout = \"30ms\"\n",
    )
    .await;
    let started = Instant::now();
    let v = app.send(json!({"to": number(41), "body": "x"})).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connector_of(&app, &v).await, "sim");
    assert!(app.metrics().await.contains(r#"kind="timeout"} 1"#));
}

#[tokio::test]
async fn eval_and_import_do_not_load_and_readyz_says_where() {
    let app = spawn_with_scripts(
        &[
            (
                "scripts/route.rhai",
                "fn route(msg) {\n    eval(\"\\\"us\\\"\")\n}\n",
            ),
            (
                "scripts/mods.rhai",
                "import \"os\" as os;\nfn cap_area(a) { () }\n",
            ),
        ],
        TWO_CARRIERS,
    )
    .await;
    let v = readyz(&app).await;
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("route.rhai:2:"), "{v}");
    assert!(warnings.contains("mods.rhai:1:"), "{v}");
    let sent = app.send(json!({"to": number(42), "body": "x"})).await;
    assert_eq!(connector_of(&app, &sent).await, "uk", "default route");
}

// ---- the shipped files and the CLI ----

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn script_check_passes_on_the_shipped_files_and_fails_with_file_and_line() {
    let out = Command::new(herald_bin())
        .args(["script", "check"])
        .current_dir(repo())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("scripts/route.rhai") && text.contains("templates/otp.es.rhai"),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("scripts")).expect("dir");
    std::fs::create_dir(dir.path().join("templates")).expect("dir");
    std::fs::write(
        dir.path().join("scripts/route.rhai"),
        "fn route(msg) {\n  \"a\" +\n}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("templates/ok.rhai"), "`fine`").expect("write");
    let out = Command::new(herald_bin())
        .args(["script", "check"])
        .arg(dir.path())
        .current_dir(repo())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scripts/route.rhai:3:"), "{text}");
    assert!(
        text.contains("ok     ") && text.contains("templates/ok.rhai"),
        "{text}"
    );
}

#[test]
fn script_test_prints_the_decision_of_the_shipped_route() {
    let run = |message: &str, at: &str| {
        let out = Command::new(herald_bin())
            .args([
                "script",
                "test",
                "scripts/route.rhai",
                "--message",
                message,
                "--at",
                at,
            ])
            .current_dir(repo())
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("json decision")
    };
    let night = run(
        r#"{"to":"+447400123456","body":"Sale!","class":"marketing"}"#,
        "2026-06-01T22:30:00Z",
    );
    assert_eq!(night["decision"], "route", "{night}");
    assert_eq!(night["connectors"], json!(["sim"]));
    assert_eq!(
        night["on_submit"]["not_before"], "2026-06-02T07:00:00.000000Z",
        "08:00 BST"
    );
    let noon = run(
        r#"{"to":"+447400123456","body":"Sale!","class":"marketing"}"#,
        "2026-06-01T12:00:00Z",
    );
    assert!(noon["on_submit"]["not_before"].is_null(), "{noon}");
    let toll_free = run(
        r#"{"to":"+80012345678","body":"Sale!","class":"marketing"}"#,
        "2026-06-01T12:00:00Z",
    );
    assert_eq!(toll_free["decision"], "reject", "{toll_free}");
}

#[test]
fn serve_with_the_shipped_config_loads_the_shipped_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data/herald.db");
    let envs = [
        ("HERALD__HTTP__LISTEN", "127.0.0.1:0".to_string()),
        ("HERALD__STORE__PATH", db.display().to_string()),
        ("HERALD__LOG__LEVEL", "warn".to_string()),
    ];
    let key = Command::new(herald_bin())
        .args(["apikey", "create", "--name", "shipped", "--scopes", "all"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(repo())
        .output()
        .expect("apikey");
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let key = String::from_utf8_lossy(&key.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut child = Command::new(herald_bin())
        .arg("serve")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let addr = line
        .trim()
        .strip_prefix("herald listening on ")
        .map(str::to_string);
    let result = std::panic::catch_unwind(|| {
        let addr = addr.expect("listening line");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let client = reqwest::Client::new();
            let ready: Value = client
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .expect("readyz")
                .json()
                .await
                .expect("json");
            assert!(
                ready.get("warnings").is_none(),
                "shipped scripts compile: {ready}"
            );
            let r = client
                .post(format!("http://{addr}/v1/messages"))
                .bearer_auth(&key)
                .json(
                    &json!({"to": UK, "template": "otp", "locale": "es-MX", "class": "otp",
                              "vars": {"app_name": "Herald", "code": "482913", "ttl_minutes": 10}}),
                )
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["encoding"], "ucs2", "the Spanish template: {v}");
        });
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
