//! The audit log over HTTP: group changes and refusals recorded with their
//! principal, action and outcome, read newest first by admins only, paged
//! with `before`, kept across a restart.

use serde_json::{Value, json};

use crate::helpers::{TestApp, number};

async fn put_group(app: &TestApp, key: &str, name: &str, members: Value) -> u16 {
    app.client
        .put(app.url(&format!("/v1/groups/{name}")))
        .bearer_auth(key)
        .json(&json!({ "members": members }))
        .send()
        .await
        .expect("put")
        .status()
        .as_u16()
}

async fn delete_group(app: &TestApp, key: &str, name: &str) -> u16 {
    app.client
        .delete(app.url(&format!("/v1/groups/{name}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("delete")
        .status()
        .as_u16()
}

async fn audit_as(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.url(&format!("/v1/audit{query}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("audit");
    (r.status().as_u16(), r.json().await.expect("json"))
}

fn entries(page: &Value) -> &Vec<Value> {
    page["entries"].as_array().expect("entries")
}

/// `(action, target, outcome, code)` of each entry.
fn summary(page: &Value) -> Vec<(String, String, String, Option<String>)> {
    entries(page)
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["target"].as_str().unwrap_or_default().to_string(),
                e["outcome"].as_str().unwrap_or_default().to_string(),
                e["code"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn row(
    action: &str,
    target: &str,
    outcome: &str,
    code: Option<&str>,
) -> (String, String, String, Option<String>) {
    (
        action.into(),
        target.into(),
        outcome.into(),
        code.map(str::to_string),
    )
}

#[tokio::test]
async fn group_changes_and_refusals_are_listed_newest_first() {
    let app = TestApp::spawn().await;
    let ops = app.create_key("ops", "broadcast").await;
    assert_eq!(
        put_group(&app, &ops, "north", json!([number(1), number(2)])).await,
        200
    );
    assert_eq!(
        put_group(&app, &ops, "north", json!(["not-a-number"])).await,
        422
    );
    assert_eq!(delete_group(&app, &ops, "north").await, 204);
    assert_eq!(delete_group(&app, &ops, "north").await, 404);

    let (status, page) = audit_as(&app, &app.key, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        summary(&page),
        [
            row("group_delete", "group:north", "refused", Some("not_found")),
            row("group_delete", "group:north", "ok", None),
            row(
                "group_replace",
                "group:north",
                "refused",
                Some("invalid_members")
            ),
            row("group_replace", "group:north", "ok", None),
        ]
    );
    for e in entries(&page) {
        let principal = e["principal"].as_str().expect("principal");
        assert!(principal.starts_with("key:ops-"), "{e}");
        assert!(e["id"].as_str().is_some_and(|id| id.len() == 26), "{e}");
        assert!(e["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{e}");
    }
    assert_eq!(page["next_before"], Value::Null);
    let details: Vec<&Value> = entries(&page).iter().map(|e| &e["detail"]).collect();
    assert_eq!(
        details,
        [
            &Value::Null,
            &Value::Null,
            &Value::Null,
            &json!("2 members")
        ]
    );
}

#[tokio::test]
async fn only_admin_keys_read_the_log_and_refusals_are_recorded() {
    let app = TestApp::spawn().await;
    let sender = app.create_key("sender", "send").await;
    let broadcaster = app.create_key("caster", "broadcast").await;
    for key in [&sender, &broadcaster] {
        let (status, v) = audit_as(&app, key, "").await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    let (status, _) = audit_as(&app, "not-a-key", "").await;
    assert_eq!(status, 401);
    // A key without the broadcast scope is refused, and that is recorded.
    assert_eq!(
        put_group(&app, &sender, "south", json!([number(3)])).await,
        403
    );
    let admin = app.create_key("auditor", "admin").await;
    let (status, page) = audit_as(&app, &admin, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        summary(&page),
        [row(
            "group_replace",
            "group:south",
            "refused",
            Some("forbidden")
        )]
    );
    assert!(
        entries(&page)[0]["principal"]
            .as_str()
            .is_some_and(|p| p.starts_with("key:sender-")),
        "{page}"
    );
}

#[tokio::test]
async fn pages_walk_back_with_before_and_bad_parameters_are_named() {
    let app = TestApp::spawn().await;
    for n in 0..5 {
        let status = put_group(&app, &app.key, &format!("g{n}"), json!([number(n)])).await;
        assert_eq!(status, 200);
    }
    let mut targets = Vec::new();
    let mut query = "?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = audit_as(&app, &app.key, &query).await;
        assert_eq!(status, 200, "{page}");
        assert!(entries(&page).len() <= 2);
        pages += 1;
        targets.extend(summary(&page).into_iter().map(|r| r.1));
        match page["next_before"].as_str() {
            Some(before) => query = format!("?limit=2&before={before}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        targets,
        ["group:g4", "group:g3", "group:g2", "group:g1", "group:g0"]
    );

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=ten", "limit"),
        ("?before=nope", "before"),
    ] {
        let (status, v) = audit_as(&app, &app.key, query).await;
        assert_eq!(status, 422, "{query}: {v}");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{query}: {message}");
    }
    let (status, page) = audit_as(&app, &app.key, "?limit=500").await;
    assert_eq!((status, entries(&page).len()), (200, 5));
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let app = TestApp::spawn().await;
    assert_eq!(
        put_group(&app, &app.key, "west", json!([number(7)])).await,
        200
    );
    assert_eq!(delete_group(&app, &app.key, "west").await, 204);
    let (_, before) = audit_as(&app, &app.key, "").await;
    let dir = app.stop().await;

    let app = TestApp::spawn_in(dir, "").await;
    let (status, after) = audit_as(&app, &app.key, "").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(entries(&after), entries(&before));
    assert_eq!(
        summary(&after),
        [
            row("group_delete", "group:west", "ok", None),
            row("group_replace", "group:west", "ok", None),
        ]
    );
}
