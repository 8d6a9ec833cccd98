//! CAP 1.2 intake over HTTP: the examples of the OASIS CAP 1.2
//! specification, Update/Cancel by reference, statuses that never reach
//! the public, and hostile or invalid documents.

use std::collections::HashSet;
use std::time::Duration;

use herald::smsc_sim::{SimConfig, SmscSim};
use herald::testing::eventually_some;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, number};

/// `cap_area` maps the OASIS examples' areas to groups.
const HOOKS: &str = r#"
fn cap_area(area_desc) {
    let a = area_desc.to_lower();
    let groups = [];
    if a.contains("tuolumne") { groups.push("tuolumne"); }
    if a.contains("alpine") { groups.push("alpine"); }
    if a.contains("los angeles") || a.contains("los ángeles") { groups.push("los-angeles"); }
    if a.contains("brawley") { groups.push("imperial"); }
    if a.contains("nationwide") { groups.push("nation"); }
    groups
}
"#;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/cap/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// A gateway whose scripts are [`HOOKS`], with the groups the hooks name.
async fn gateway(extra: &str) -> TestApp {
    let scripts = tempfile::tempdir().expect("tempdir");
    std::fs::write(scripts.path().join("hooks.rhai"), HOOKS).expect("hooks");
    let dir = scripts.keep();
    let app = TestApp::spawn_with(&format!(
        "[scripts]\nenabled = true\ndir = \"{d}\"\ntemplates_dir = \"{d}\"\nwatch = false\n{extra}",
        d = dir.display()
    ))
    .await;
    for (name, from) in [
        ("tuolumne", 1),
        ("alpine", 10),
        ("los-angeles", 20),
        ("imperial", 30),
        ("nation", 40),
        ("exercise", 90),
    ] {
        let members: Vec<String> = (from..from + 3).map(number).collect();
        let r = app
            .client
            .put(app.url(&format!("/v1/groups/{name}")))
            .bearer_auth(&app.key)
            .json(&json!({ "members": members }))
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 200);
    }
    app
}

async fn post_cap(app: &TestApp, xml: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/v1/broadcasts/cap"))
        .bearer_auth(&app.key)
        .header("content-type", "application/cap+xml")
        .body(xml.to_string())
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn the_oasis_examples_become_broadcasts_of_their_mapped_groups() {
    let app = gateway("").await;
    // A.2 Severe Thunderstorm Warning: two of its areas map to groups.
    let (status, v) = post_cap(&app, &fixture("a2-severe-thunderstorm.xml")).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["action"], "created");
    let b = &v["broadcast"];
    assert_eq!(
        b["status"], "pending_approval",
        "CAP alerts are approved too"
    );
    assert_eq!(b["mode"], "live");
    assert_eq!(b["class"], "emergency");
    assert_eq!(b["total"], 6, "tuolumne and alpine: {b}");
    assert_eq!(b["title"], "SEVERE THUNDERSTORM WARNING");
    assert!(
        b["text"].as_str().expect("text").contains("TAKE COVER"),
        "{b}"
    );
    assert_eq!(b["cap"]["identifier"], "KSTO1055887203");
    // The same alert again: the same broadcast, nothing new.
    let (status, again) = post_cap(&app, &fixture("a2-severe-thunderstorm.xml")).await;
    assert_eq!((status, again["action"].as_str()), (200, Some("duplicate")));
    assert_eq!(again["broadcast"]["id"], b["id"]);
    // A.4 AMBER alert: two infos (English, Spanish), one group.
    let (status, v) = post_cap(&app, &fixture("a4-amber-alert.xml")).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["broadcast"]["total"], 3);
    // A.1 Homeland Security Advisory: nationwide.
    let (status, v) = post_cap(&app, &fixture("a1-homeland-security.xml")).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["broadcast"]["groups"], json!(["nation"]));
    // A.3 is an Update of an alert Herald never saw.
    let (status, v) = post_cap(&app, &fixture("a3-earthquake-update.xml")).await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("TRI13970876.1")
    );
}

#[tokio::test]
async fn updates_and_cancels_act_on_the_referenced_broadcast() {
    let app = gateway("").await;
    // The earthquake report A.3 updates: first the original it references.
    let original = fixture("a3-earthquake-update.xml")
        .replace("TRI13970876.2", "TRI13970876.1")
        .replace("<msgType>Update</msgType>", "<msgType>Alert</msgType>")
        .replace(
            "<references>trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00</references>",
            "",
        );
    let (status, v) = post_cap(&app, &original).await;
    assert_eq!(status, 201, "{v}");
    let first = v["broadcast"]["id"].as_str().expect("id").to_string();
    let (status, v) = post_cap(&app, &fixture("a3-earthquake-update.xml")).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["canceled"][0]["id"], first.as_str());
    assert_eq!(v["canceled"][0]["status"], "canceled");
    assert_ne!(v["broadcast"]["id"], first.as_str());
    // A Cancel of the thunderstorm warning.
    let (_, v) = post_cap(&app, &fixture("a2-severe-thunderstorm.xml")).await;
    let storm = v["broadcast"]["id"].as_str().expect("id").to_string();
    let (status, v) = post_cap(&app, &fixture("cancel.xml")).await;
    assert_eq!(
        (status, v["action"].as_str()),
        (200, Some("canceled")),
        "{v}"
    );
    assert_eq!(v["canceled"][0]["id"], storm.as_str());
    let r: Value = app
        .get(&format!("/v1/broadcasts/{storm}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "canceled");
    // An Update without references names the element.
    let bad = fixture("a3-earthquake-update.xml").replace(
        "<references>trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00</references>",
        "",
    );
    let (status, v) = post_cap(&app, &bad.replace("TRI13970876.2", "TRI13970876.3")).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("references")
    );
}

#[tokio::test]
async fn test_exercise_and_draft_alerts_never_reach_the_public() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let smsc = SmscSim::start(listener, SimConfig::default()).await;
    let app = gateway(&format!(
        "[[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"herald\"\npassword = \"pw\"\n\
         [broadcasts]\ncap_requires_approval = false\n",
        smsc.local_addr().port()
    ))
    .await;
    let storm = fixture("a2-severe-thunderstorm.xml");
    for (n, status) in ["Test", "Draft", "System"].into_iter().enumerate() {
        let xml = storm
            .replace(
                "<status>Actual</status>",
                &format!("<status>{status}</status>"),
            )
            .replace("KSTO1055887203", &format!("KSTO-T{n}"));
        let (code, v) = post_cap(&app, &xml).await;
        assert_eq!(
            (code, v["action"].as_str()),
            (200, Some("not_sent")),
            "{status}: {v}"
        );
    }
    let exercise = storm
        .replace("<status>Actual</status>", "<status>Exercise</status>")
        .replace("KSTO1055887203", "KSTO-EX");
    let (code, v) = post_cap(&app, &exercise).await;
    assert_eq!(code, 201, "{v}");
    let b = &v["broadcast"];
    assert_eq!(b["mode"], "exercise");
    assert_eq!(b["groups"], json!(["exercise"]));
    let id = b["id"].as_str().expect("id").to_string();
    eventually_some(Duration::from_secs(10), "exercise sent", async || {
        let v: Value = app
            .get(&format!("/v1/broadcasts/{id}"))
            .await
            .json()
            .await
            .ok()?;
        (v["status"] == "completed").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let to: HashSet<String> = smsc
        .submitted()
        .iter()
        .map(|s| s.destination_addr.clone())
        .collect();
    let exercise_group: HashSet<String> = (90..93)
        .map(|n| number(n).trim_start_matches('+').to_string())
        .collect();
    assert_eq!(to, exercise_group, "only the exercise group got anything");
    // Long: several parts per recipient, the first starting (after its
    // concatenation header) with the prefix.
    for digits in &exercise_group {
        let parts: Vec<String> = smsc
            .submitted()
            .iter()
            .filter(|s| &s.destination_addr == digits)
            .map(|s| String::from_utf8_lossy(&s.short_message).to_string())
            .collect();
        assert!(
            parts.iter().any(|p| p.contains("EXERCISE: ")),
            "prefixed: {parts:?}"
        );
    }
    smsc.shutdown().await;
}

#[tokio::test]
async fn hostile_and_invalid_cap_is_refused_clearly() {
    let app = gateway("").await;
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"#;
    let (status, v) = post_cap(&app, bomb).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("dtd_not_allowed")),
        "{v}"
    );
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>"#;
    assert_eq!(post_cap(&app, xxe).await.0, 400);
    let storm = fixture("a2-severe-thunderstorm.xml");
    let truncated = &storm[..storm.len() / 2];
    let (status, v) = post_cap(&app, truncated).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("malformed_xml")),
        "{v}"
    );
    let cap11 = storm.replace(
        "urn:oasis:names:tc:emergency:cap:1.2",
        "urn:oasis:names:tc:emergency:cap:1.1",
    );
    let (status, v) = post_cap(&app, &cap11).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_cap")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().expect("m").contains("alert"),
        "{v}"
    );
    let bad_urgency = storm.replace("<urgency>Immediate</urgency>", "<urgency>Now</urgency>");
    let (status, v) = post_cap(&app, &bad_urgency).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("urgency"),
        "{v}"
    );
    // No area maps to a group.
    let nowhere = storm
        .replace("TUOLUMNE", "NOWHERE")
        .replace("ALPINE", "NOWHERE");
    let (status, v) = post_cap(&app, &nowhere).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("areaDesc"),
        "{v}"
    );
    // Not XML at all.
    let r = app
        .client
        .post(app.url("/v1/broadcasts/cap"))
        .bearer_auth(&app.key)
        .json(&json!({"alert": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    // A key without the broadcast scope.
    let sender = app.create_key("sender", "send").await;
    let r = app
        .client
        .post(app.url("/v1/broadcasts/cap"))
        .bearer_auth(&sender)
        .header("content-type", "application/cap+xml")
        .body(storm)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
}
