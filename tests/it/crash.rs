//! Crash safety with the real binary: SIGKILL while a slow carrier holds a
//! backlog, restart, and every accepted message still reaches a final status.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{cli_api_key, number, serve};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [log]\nlevel = \"warn\"\n[scripts]\nenabled = false\n\
         [[connectors]]\nname = \"sim\"\nkind = \"sim\"\ntps = 200\nwindow = 16\ndelay_ms = 300\n",
        dir.join("data/herald.db").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let key = cli_api_key(&config, "crash");
    let client = reqwest::Client::new();
    let mut served = serve(&config);

    // Accept a backlog: the carrier takes 200/s, so most are still queued.
    let mut ids = Vec::new();
    for batch in 0..4u32 {
        let messages: Vec<Value> = (0..250)
            .map(
                |i| json!({"to": number(batch * 250 + i), "body": "survive", "class": "marketing"}),
            )
            .collect();
        ids.extend(served.send_batch(&client, &key, messages).await);
    }
    // Single POSTs racing with the kill: only those answered 202 count.
    let mut singles = Vec::new();
    for i in 0..50u32 {
        let client = client.clone();
        let base = served.base.clone();
        let key = key.clone();
        singles.push(tokio::spawn(async move {
            let r = client
                .post(format!("{base}/v1/messages"))
                .bearer_auth(&key)
                .json(&json!({"to": number(5_000 + i), "body": "racing", "class": "otp"}))
                .send()
                .await
                .ok()?;
            if r.status() != 202 {
                return None;
            }
            let v: Value = r.json().await.ok()?;
            v["id"].as_str().map(str::to_string)
        }));
        if i == 25 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            served.child.kill().expect("SIGKILL");
        }
    }
    for s in singles {
        if let Ok(Some(id)) = s.await {
            ids.push(id);
        }
    }
    let _ = served.child.wait();
    assert!(
        ids.len() >= 1_000,
        "only {} accepted before the kill",
        ids.len()
    );

    let served = serve(&config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<String> = ids.clone();
    while !pending.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} messages never reached a final status",
            pending.len(),
            ids.len()
        );
        let mut still = Vec::new();
        for id in pending {
            let r = client
                .get(format!("{}/v1/messages/{id}", served.base))
                .bearer_auth(&key)
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200, "accepted message {id} is lost");
            let m: Value = r.json().await.expect("json");
            match m["status"].as_str() {
                Some("delivered") => {}
                Some("queued" | "submitted") => still.push(id),
                other => panic!("message {id} ended {other:?}: {m}"),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
