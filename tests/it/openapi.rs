//! The OpenAPI document and the router agree: `docs/openapi.json` is the
//! document the code generates and the one the server serves, every route
//! the router serves (`api::routes()`, the table it is built from) is
//! documented with its method, nothing undocumented is served and nothing
//! documented is missing. Regenerate the file with
//! `HERALD_UPDATE_OPENAPI=1 cargo nextest run openapi`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{TestApp, number};

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = herald::api::openapi::pretty_json();
    if std::env::var_os("HERALD_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run HERALD_UPDATE_OPENAPI=1 cargo nextest run openapi"
    );
}

/// `(path, method)` of every operation in an OpenAPI document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter(|k| {
                    matches!(
                        k.as_str(),
                        "get" | "post" | "put" | "delete" | "patch" | "head" | "options" | "trace"
                    )
                })
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect()
}

fn routed() -> BTreeSet<(String, String)> {
    herald::api::routes()
        .iter()
        .flat_map(|r| {
            r.method_names()
                .into_iter()
                .map(move |m| (r.path.clone(), m.to_string()))
        })
        .collect()
}

#[test]
fn every_route_of_the_router_is_documented_and_nothing_else() {
    let doc: Value = serde_json::from_str(&herald::api::openapi::pretty_json()).expect("json");
    let documented = documented(&doc);
    let routed = routed();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but missing from ApiDoc's paths(...): {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unserved.is_empty(),
        "documented but not in api::routes(): {unserved:?}"
    );
    assert!(routed.contains(&("/v1/messages/batch".to_string(), "post".to_string())));
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_every_route_is_live() {
    let app = TestApp::spawn().await;
    let served: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(committed_path()).expect("committed file"))
            .expect("committed json");
    assert!(
        served == committed,
        "GET /openapi.json differs from docs/openapi.json"
    );

    // Each documented operation reaches a handler: not the unknown-route
    // fallback and not the wrong-method one.
    for (path, method) in documented(&served) {
        let url = app.url(&path.replace("{id}", "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let r = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body.contains("no such endpoint")),
            "{method} {path} is documented but not served"
        );
    }
    // The fallback does answer a route that is not in the table.
    let r = app
        .client
        .get(app.url("/v1/undocumented"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .contains("no such endpoint")
    );
}

/// The parameter `name` of operation `method path` in `doc`.
fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{method} {path} documents no parameter {name}"))
}

fn bound(schema: &Value, key: &str) -> u64 {
    schema[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {schema}"))
}

/// The bounds the served document states are the ones the API enforces:
/// each is read from the document and tried just inside and just outside.
#[tokio::test]
async fn documented_bounds_are_the_enforced_ones() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.expect("json");

    // GET /v1/inbound: query parameters, `limit` within its bounds.
    let limit = parameter(&doc, "/v1/inbound", "get", "limit");
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["required"], false);
    assert_eq!(
        parameter(&doc, "/v1/inbound", "get", "after")["in"],
        "query"
    );
    let (min, max) = (
        bound(&limit["schema"], "minimum"),
        bound(&limit["schema"], "maximum"),
    );
    for (value, served) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
        let status = app
            .get(&format!("/v1/inbound?limit={value}"))
            .await
            .status();
        assert_eq!(status == 200, served, "limit={value}: {status}");
        if !served {
            assert_eq!(status, 422, "limit={value}");
        }
    }

    // POST /v1/messages/batch: `messages` between minItems and maxItems,
    // no other top-level field.
    let batch = &doc["components"]["schemas"]["BatchRequest"];
    assert_eq!(batch["additionalProperties"], false);
    let messages = &batch["properties"]["messages"];
    let (min_items, max_items) = (bound(messages, "minItems"), bound(messages, "maxItems"));
    let items = |n: u64| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"to": number(u32::try_from(i % 1000).unwrap_or(0)), "body": "b"}))
            .collect()
    };
    let post_batch = async |body: Value| app.post("/v1/messages/batch", &body).await.status();
    assert_eq!(
        post_batch(json!({"messages": items(min_items - 1)})).await,
        422
    );
    assert_eq!(post_batch(json!({"messages": items(min_items)})).await, 202);
    assert_eq!(
        post_batch(json!({"messages": items(max_items + 1)})).await,
        413
    );
    assert_eq!(
        post_batch(json!({"messages": items(min_items), "colour": "red"})).await,
        422
    );

    // SendRequest (a message, and each batch item): no unknown fields, and
    // `validity_seconds` from its minimum.
    let send = &doc["components"]["schemas"]["SendRequest"];
    assert_eq!(send["additionalProperties"], false);
    let r = app
        .post(
            "/v1/messages",
            &json!({"to": number(1), "body": "b", "colour": "red"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .post(
            "/v1/messages/batch",
            &json!({"messages": [{"to": number(1), "body": "b", "colour": "red"}]}),
        )
        .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["rejected"][0]["index"], 0, "{v}");
    let min_validity = bound(&send["properties"]["validity_seconds"], "minimum");
    for (value, status) in [(min_validity - 1, 422), (min_validity, 202)] {
        let r = app
            .post(
                "/v1/messages",
                &json!({"to": number(2), "body": "b", "validity_seconds": value}),
            )
            .await;
        assert_eq!(r.status(), status, "validity_seconds={value}");
    }
}
