//! Broadcasts from the console in a real Chromium: compose with a live
//! preview, an exercise that reaches only the exercise group, a live send
//! through the confirmation step, the two-person rule, progress to 100 %
//! and a cancel mid-send. What reached the public is read from what the
//! SMSC simulator received.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald::smsc_sim::{SimConfig, SmscSim};
use serde_json::Value;
use tokio::net::TcpListener;

use super::harness::{Browser, Server};
use crate::helpers::number;

async fn smsc() -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SmscSim::start(
        listener,
        SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await
}

/// One SMPP connector to `smsc` at `tps` (0: no cap), the default route.
fn carrier(smsc: &SmscSim, tps: u32) -> String {
    format!(
        "[[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"herald\"\npassword = \"pw\"\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\ntps = {tps}\n\
         [routing]\ndefault = [\"carrier\"]\n",
        smsc.local_addr().port()
    )
}

/// Digits as the SMSC sees a test number.
fn digits(n: u32) -> String {
    number(n).trim_start_matches('+').to_string()
}

/// The API side of a test: a key, groups, broadcast views.
struct Api {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    fn of(server: &Server) -> Api {
        Api {
            base: server.base.clone(),
            key: server.api_key(),
            client: reqwest::Client::new(),
        }
    }

    async fn put_group(&self, name: &str, from: u32, count: u32) {
        let csv: String = (from..from + count).map(|n| number(n) + "\n").collect();
        let r = self
            .client
            .put(format!("{}/v1/groups/{name}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .expect("put group");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    async fn broadcasts(&self) -> Vec<Value> {
        let v: Value = self
            .client
            .get(format!("{}/v1/broadcasts", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        v.as_array()
            .cloned()
            .or_else(|| v["broadcasts"].as_array().cloned())
            .unwrap_or_default()
    }

    async fn broadcast(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/v1/broadcasts/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }
}

/// Fills the compose form: title, text, groups, mode ("" leaves it unset)
/// and whether a second person must approve.
async fn compose(
    browser: &Browser,
    server: &Server,
    title: &str,
    body: &str,
    groups: &[&str],
    mode: &str,
    approval: bool,
) {
    browser.goto(&server.url("/console/compose")).await;
    browser.fill("#title", title).await;
    browser.fill("#body", body).await;
    for g in groups {
        browser.click(&format!("#group-{g}")).await;
    }
    if !mode.is_empty() {
        browser.click(&format!("#mode-{mode}")).await;
    }
    let checked = browser
        .find("#requires-approval")
        .await
        .prop("checked")
        .await
        .expect("checkbox")
        .is_some_and(|v| v == "true");
    if checked != approval {
        browser.click("#requires-approval").await;
    }
}

/// The broadcast id of the progress page the browser is on.
async fn current_id(browser: &Browser) -> String {
    let started = Instant::now();
    loop {
        let path = browser.path().await;
        if let Some(id) = path.strip_prefix("/console/broadcasts/") {
            if !id.is_empty() && !id.contains('/') {
                return id.to_string();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not on a broadcast page: {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn console_compose_shows_a_live_preview_and_requires_a_mode() {
    let server = Server::start("");
    let api = Api::of(&server);
    api.put_group("north", 100, 25).await;
    api.put_group("exercise", 500, 2).await;
    server.operator("alice", "operator");
    let mut browser = Browser::start("compose").await;
    browser.sign_in(&server, "alice").await;
    compose(
        &browser,
        &server,
        "Flood warning",
        "Flood warning for the north district: move to higher ground now.",
        &["north"],
        "",
        true,
    )
    .await;
    browser
        .wait_text("#preview-recipients", "25", Duration::from_secs(10))
        .await;
    browser
        .wait_text("#preview-encoding", "GSM", Duration::from_secs(10))
        .await;
    assert!(
        browser
            .text("#preview-text")
            .await
            .contains("move to higher ground")
    );
    // A character outside GSM 03.38 switches the encoding, live.
    browser
        .find("#body")
        .await
        .send_keys(" — ą")
        .await
        .expect("type");
    browser
        .wait_text("#preview-encoding", "UCS-2", Duration::from_secs(10))
        .await;
    // Pasted numbers join the audience.
    browser
        .fill("#numbers", &format!("{}\n{}", number(900), number(901)))
        .await;
    browser
        .wait_text("#preview-recipients", "27", Duration::from_secs(10))
        .await;
    // Neither mode is preselected, and going on without one is refused.
    assert!(!browser.has("#mode-live:checked").await);
    assert!(!browser.has("#mode-exercise:checked").await);
    browser.screenshot("preview").await;
    browser
        .client
        .execute(
            "document.querySelectorAll('input[name=mode]').forEach(e => e.required = false);",
            vec![],
        )
        .await
        .expect("script");
    browser.click("#continue").await;
    browser
        .wait_text(
            "#compose-error",
            "Choose Exercise or Live",
            Duration::from_secs(10),
        )
        .await;
    assert!(api.broadcasts().await.is_empty(), "nothing was created");
    // Choosing exercise shows the banner at once.
    browser.click("#mode-exercise").await;
    assert!(
        browser
            .find("#exercise-banner")
            .await
            .is_displayed()
            .await
            .expect("shown")
    );
    browser.screenshot("exercise-chosen").await;
    browser.close().await;
}

#[tokio::test]
async fn console_exercise_reaches_only_the_exercise_group() {
    let smsc = smsc().await;
    let server = Server::start(&carrier(&smsc, 0));
    let api = Api::of(&server);
    api.put_group("exercise", 100, 3).await;
    api.put_group("city", 200, 20).await;
    server.operator("alice", "operator");
    let mut browser = Browser::start("exercise").await;
    browser.sign_in(&server, "alice").await;
    compose(
        &browser,
        &server,
        "Tsunami drill",
        "Tsunami warning: move to high ground.",
        &["city"],
        "exercise",
        false,
    )
    .await;
    browser.click("#continue").await;
    let id = current_id(&browser).await;
    assert!(
        browser
            .find("#exercise-banner")
            .await
            .is_displayed()
            .await
            .expect("shown")
    );
    browser
        .wait_text("#status", "completed", Duration::from_secs(20))
        .await;
    browser
        .wait_text("#percent", "100 %", Duration::from_secs(10))
        .await;
    browser.screenshot("completed").await;
    browser.close().await;
    let v = api.broadcast(&id).await;
    assert_eq!(v["mode"], "exercise", "{v}");
    assert_eq!(v["total"], 3, "{v}");
    // What the SMSC received: the exercise group only, prefixed.
    let started = Instant::now();
    while smsc.submitted().len() < 3 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = smsc.submitted();
    let to: HashSet<String> = sent.iter().map(|s| s.destination_addr.clone()).collect();
    let expected: HashSet<String> = (100..103).map(digits).collect();
    assert_eq!(to, expected, "nobody outside the exercise group");
    assert_eq!(sent.len(), 3);
    for s in &sent {
        assert!(String::from_utf8_lossy(&s.short_message).starts_with("EXERCISE: "));
    }
    smsc.shutdown().await;
}

#[tokio::test]
async fn console_live_send_goes_through_the_confirmation_step() {
    let smsc = smsc().await;
    let server = Server::start(&carrier(&smsc, 0));
    let api = Api::of(&server);
    api.put_group("city", 200, 20).await;
    server.operator("alice", "operator");
    let mut browser = Browser::start("live").await;
    browser.sign_in(&server, "alice").await;
    compose(
        &browser,
        &server,
        "Gas leak",
        "Gas leak near Main St: stay indoors, close windows.",
        &["city"],
        "live",
        false,
    )
    .await;
    browser.click("#continue").await;
    browser
        .wait_text("#confirm-heading", "LIVE", Duration::from_secs(10))
        .await;
    assert_eq!(browser.text("#confirm-count").await, "20");
    assert!(browser.text("#confirm-text").await.contains("stay indoors"));
    browser.screenshot("confirm").await;
    // A wrong count sends nothing.
    browser.fill("#typed-count", "19").await;
    browser.click("#send-live").await;
    browser
        .wait_text(
            "#confirm-error",
            "Nothing was sent",
            Duration::from_secs(10),
        )
        .await;
    assert!(api.broadcasts().await.is_empty());
    assert!(smsc.submitted().is_empty());
    browser.fill("#typed-count", "20").await;
    browser.click("#send-live").await;
    let id = current_id(&browser).await;
    assert!(browser.has("#live-banner").await);
    browser
        .wait_text("#percent", "100 %", Duration::from_secs(20))
        .await;
    browser
        .wait_text("#status", "completed", Duration::from_secs(20))
        .await;
    browser.screenshot("progress").await;
    browser.close().await;
    let v = api.broadcast(&id).await;
    assert_eq!(v["mode"], "live");
    assert_eq!(v["total"], 20);
    let started = Instant::now();
    while smsc.submitted().len() < 20 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let to: HashSet<String> = smsc
        .submitted()
        .iter()
        .map(|s| s.destination_addr.clone())
        .collect();
    assert_eq!(to, (200..220).map(digits).collect::<HashSet<_>>());
    smsc.shutdown().await;
}

#[tokio::test]
async fn console_creator_cannot_approve_and_a_second_operator_approves_to_100_percent() {
    let smsc = smsc().await;
    let server = Server::start(&carrier(&smsc, 0));
    let api = Api::of(&server);
    api.put_group("city", 200, 40).await;
    server.operator("alice", "approver");
    server.operator("bob", "approver");
    server.operator("carol", "admin");

    let mut alice = Browser::start("approval-creator").await;
    alice.sign_in(&server, "alice").await;
    compose(
        &alice,
        &server,
        "Boil water notice",
        "Boil water before drinking until further notice.",
        &["city"],
        "live",
        true,
    )
    .await;
    alice.click("#continue").await;
    alice.fill("#typed-count", "40").await;
    alice.click("#send-live").await;
    let id = current_id(&alice).await;
    alice
        .wait_text("#status", "pending_approval", Duration::from_secs(10))
        .await;
    assert!(alice.text("#awaiting").await.contains("cannot approve"));
    assert!(
        !alice.has("#approve").await,
        "no approve button for the creator"
    );
    alice.screenshot("no-approve-button").await;
    // Forcing it anyway: the server refuses.
    alice
        .client
        .execute(
            "const f = document.createElement('form');\
             f.method = 'post'; f.action = location.pathname + '/approve';\
             const t = document.querySelector('form.who input[name=csrf]').cloneNode();\
             f.appendChild(t); document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .expect("script");
    alice
        .wait_text("h1", "Not allowed", Duration::from_secs(10))
        .await;
    assert!(alice.text(".error-message").await.contains("someone else"));
    alice.screenshot("self-approval-refused").await;
    alice.close().await;
    assert_eq!(api.broadcast(&id).await["status"], "pending_approval");
    assert!(smsc.submitted().is_empty());

    let mut bob = Browser::start("approval").await;
    bob.sign_in(&server, "bob").await;
    bob.click("a[href='/console/approvals']").await;
    bob.click(&format!("a[href='/console/broadcasts/{id}']"))
        .await;
    bob.fill("#comment", "Checked with the duty officer.").await;
    bob.screenshot("approve").await;
    bob.click("#approve").await;
    bob.wait_text("#notice", "Approved", Duration::from_secs(10))
        .await;
    bob.wait_text("#percent", "100 %", Duration::from_secs(20))
        .await;
    bob.wait_text("#status", "completed", Duration::from_secs(20))
        .await;
    assert_eq!(bob.text("#decided-by").await, "operator:bob");
    bob.screenshot("progress").await;
    bob.close().await;
    let v = api.broadcast(&id).await;
    assert_eq!(v["decided_by"], "operator:bob", "{v}");
    assert_eq!(v["comment"], "Checked with the duty officer.");

    // The admin's audit view: both people, alice's refused self-approval,
    // the sign-ins.
    let mut carol = Browser::start("audit").await;
    carol.sign_in(&server, "carol").await;
    carol.click("a[href='/console/audit']").await;
    let audit = carol
        .wait_text("#audit", "operator:bob", Duration::from_secs(10))
        .await;
    for want in [
        "operator:alice",
        "broadcast_create",
        "broadcast_approve",
        "refused",
        "operator_login",
        &format!("broadcast:{id}"),
    ] {
        assert!(
            audit.contains(want),
            "the audit log lacks {want:?}: {audit}"
        );
    }
    carol.screenshot("audit").await;
    carol.close().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn console_cancel_mid_send_shows_the_canceled_count() {
    let smsc = smsc().await;
    let server = Server::start(&carrier(&smsc, 100));
    let api = Api::of(&server);
    api.put_group("city", 1000, 3000).await;
    server.operator("alice", "operator");
    let mut browser = Browser::start("cancel").await;
    browser.sign_in(&server, "alice").await;
    compose(
        &browser,
        &server,
        "Evacuate",
        "Evacuate zone A now.",
        &["city"],
        "live",
        false,
    )
    .await;
    browser.click("#continue").await;
    browser.fill("#typed-count", "3000").await;
    browser.click("#send-live").await;
    let id = current_id(&browser).await;
    let started = Instant::now();
    while smsc.submitted().len() < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "nothing was sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.click("#cancel").await;
    browser
        .wait_path(&format!("/console/broadcasts/{id}/cancel"))
        .await;
    browser.screenshot("cancel-confirm").await;
    browser.click("#confirm-cancel").await;
    browser
        .wait_text("#notice", "Canceled", Duration::from_secs(10))
        .await;
    browser
        .wait_text("#status", "canceled", Duration::from_secs(10))
        .await;
    let shown: u64 = browser
        .text("#count-canceled")
        .await
        .trim()
        .parse()
        .expect("a count");
    assert!(shown > 1000, "canceled count shown: {shown}");
    assert!(
        !browser.has("#cancel").await,
        "a canceled broadcast has no cancel button"
    );
    browser.screenshot("canceled").await;
    browser.close().await;
    let v = api.broadcast(&id).await;
    assert_eq!(v["status"], "canceled");
    assert!(v["canceled"].as_u64().unwrap_or(0) > 1000, "{v}");
    assert!((smsc.submitted().len() as u64) < 3000);
    smsc.shutdown().await;
}

#[tokio::test]
async fn console_compose_renders_a_template_with_locale_and_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (scripts, templates) = (dir.path().join("scripts"), dir.path().join("templates"));
    std::fs::create_dir_all(&scripts).expect("dir");
    std::fs::create_dir_all(&templates).expect("dir");
    std::fs::write(
        templates.join("flood.rhai"),
        "`Flood warning for ${area}: move to higher ground now.`",
    )
    .expect("template");
    std::fs::write(
        templates.join("flood.es.rhai"),
        "`Alerta de inundación en ${area}: suba a un lugar alto ya.`",
    )
    .expect("template");
    let server = Server::start(&format!(
        "[scripts]\nenabled = true\nwatch = false\ndir = \"{}\"\ntemplates_dir = \"{}\"\n",
        scripts.display(),
        templates.display()
    ));
    let api = Api::of(&server);
    api.put_group("exercise", 100, 2).await;
    api.put_group("valley", 200, 12).await;
    server.operator("alice", "operator");
    let mut browser = Browser::start("template").await;
    browser.sign_in(&server, "alice").await;
    browser.goto(&server.url("/console/compose")).await;
    browser.fill("#title", "Valley flood").await;
    browser.click("details summary").await;
    browser.fill("#template", "flood").await;
    browser.fill("#locale", "es").await;
    browser.fill("#vars", "area=Valle Norte").await;
    browser.click("#group-valley").await;
    browser
        .wait_text(
            "#preview-text",
            "Alerta de inundación en Valle Norte",
            Duration::from_secs(10),
        )
        .await;
    browser
        .wait_text("#preview-recipients", "12", Duration::from_secs(10))
        .await;
    browser.screenshot("template-preview").await;
    browser.click("#mode-exercise").await;
    browser.click("#requires-approval").await;
    browser.click("#continue").await;
    let id = current_id(&browser).await;
    let v = api.broadcast(&id).await;
    assert_eq!(
        v["text"], "EXERCISE: Alerta de inundación en Valle Norte: suba a un lugar alto ya.",
        "{v}"
    );
    assert_eq!(
        v["total"], 2,
        "an exercise reaches the exercise group only: {v}"
    );
    browser.close().await;
}

/// The whole path a new operator takes: a 10,000-member group uploaded in
/// the console, a live broadcast composed and confirmed by one operator,
/// approved by another, sent to 100 %.
#[tokio::test]
async fn console_new_operators_send_an_approved_live_broadcast_to_10000_members() {
    let server = Server::start("");
    server.operator("alice", "operator");
    server.operator("bob", "approver");
    let csv = server.dir.path().join("county.csv");
    let text: String = (0..10_000).map(|n| number(20_000 + n) + "\n").collect();
    std::fs::write(&csv, text).expect("csv");

    let mut alice = Browser::start("ten-thousand-compose").await;
    alice.sign_in(&server, "alice").await;
    alice.click("a[href='/console/groups']").await;
    alice.fill("#group-name", "county").await;
    alice
        .find("#group-file")
        .await
        .send_keys(&csv.display().to_string())
        .await
        .expect("choose file");
    alice.click("#upload").await;
    alice
        .wait_text(
            "#notice",
            "county now has 10000 members",
            Duration::from_secs(30),
        )
        .await;
    compose(
        &alice,
        &server,
        "Wildfire evacuation",
        "Wildfire: evacuate the county now via Route 9. Do not wait.",
        &["county"],
        "live",
        true,
    )
    .await;
    alice
        .wait_text("#preview-recipients", "10,000", Duration::from_secs(10))
        .await;
    alice.click("#continue").await;
    alice
        .wait_text("#confirm-count", "10,000", Duration::from_secs(10))
        .await;
    // A thousands separator is fine.
    alice.fill("#typed-count", "10,000").await;
    alice.screenshot("confirm").await;
    alice.click("#send-live").await;
    let id = current_id(&alice).await;
    alice
        .wait_text("#status", "pending_approval", Duration::from_secs(10))
        .await;
    alice.close().await;

    let mut bob = Browser::start("ten-thousand-approve").await;
    bob.sign_in(&server, "bob").await;
    bob.goto(&server.url("/console/approvals")).await;
    bob.click(&format!("a[href='/console/broadcasts/{id}']"))
        .await;
    bob.click("#approve").await;
    bob.wait_text("#notice", "Approved", Duration::from_secs(10))
        .await;
    bob.wait_text("#percent", "100 %", Duration::from_secs(120))
        .await;
    bob.wait_text("#status", "completed", Duration::from_secs(30))
        .await;
    assert_eq!(bob.text("#count-total").await, "10000");
    bob.screenshot("completed").await;
    bob.close().await;
}

#[tokio::test]
async fn console_an_approver_rejects_with_a_comment_and_nothing_is_sent() {
    let smsc = smsc().await;
    let server = Server::start(&carrier(&smsc, 0));
    let api = Api::of(&server);
    api.put_group("city", 200, 10).await;
    server.operator("alice", "operator");
    server.operator("bob", "approver");
    let alice = Browser::start("reject-creator").await;
    alice.sign_in(&server, "alice").await;
    // An operator (not an approver) has no Approvals page.
    assert!(!alice.has("a[href='/console/approvals']").await);
    compose(
        &alice,
        &server,
        "Road closure",
        "Road closed at the bridge: use the bypass.",
        &["city"],
        "live",
        true,
    )
    .await;
    alice.click("#continue").await;
    alice.fill("#typed-count", "10").await;
    alice.click("#send-live").await;
    let id = current_id(&alice).await;
    alice.goto(&server.url("/console/approvals")).await;
    alice
        .wait_text("h1", "Not allowed", Duration::from_secs(10))
        .await;
    alice.close().await;

    let mut bob = Browser::start("reject").await;
    bob.sign_in(&server, "bob").await;
    bob.goto(&server.url(&format!("/console/broadcasts/{id}")))
        .await;
    bob.fill("#comment", "Wrong bridge: check the map first.")
        .await;
    bob.click("#reject").await;
    bob.wait_text("#notice", "Rejected", Duration::from_secs(10))
        .await;
    bob.wait_text("#status", "rejected", Duration::from_secs(10))
        .await;
    assert!(!bob.has("#approve").await && !bob.has("#cancel").await);
    bob.screenshot("rejected").await;
    bob.close().await;
    let v = api.broadcast(&id).await;
    assert_eq!(v["status"], "rejected", "{v}");
    assert_eq!(v["comment"], "Wrong bridge: check the map first.");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smsc.submitted().is_empty(), "nothing was sent");
    smsc.shutdown().await;
}

#[tokio::test]
async fn console_compose_previews_and_sends_without_javascript() {
    let smsc = smsc().await;
    let server = Server::start(&carrier(&smsc, 0));
    let api = Api::of(&server);
    api.put_group("exercise", 100, 2).await;
    api.put_group("city", 200, 5).await;
    server.operator("alice", "operator");
    let mut browser = Browser::start_without_javascript("no-javascript").await;
    browser.sign_in(&server, "alice").await;
    compose(
        &browser,
        &server,
        "Heat warning",
        "Extreme heat today: drink water, stay in the shade.",
        &["city"],
        "",
        false,
    )
    .await;
    // No script: the preview comes with the page, on request.
    assert!(!browser.has("#preview-text").await);
    browser.click("#preview-button").await;
    browser
        .wait_text("#preview-recipients", "5", Duration::from_secs(10))
        .await;
    assert!(browser.text("#preview-text").await.contains("Extreme heat"));
    // What was typed is kept.
    assert_eq!(
        browser
            .find("#title")
            .await
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("Heat warning")
    );
    browser.screenshot("preview").await;
    browser.click("#mode-live").await;
    browser.click("#continue").await;
    browser.fill("#typed-count", "5").await;
    browser.click("#send-live").await;
    let id = current_id(&browser).await;
    // Without live updates, a reload shows where it is.
    let started = Instant::now();
    loop {
        browser
            .goto(&server.url(&format!("/console/broadcasts/{id}")))
            .await;
        if browser.text("#status").await == "completed" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never completed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(browser.text("#percent").await, "100 %");
    browser.close().await;
    smsc.shutdown().await;
}
