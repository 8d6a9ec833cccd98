//! The OpenAPI document and the router agree: `docs/openapi.json` is the
//! document the code generates and the one the server serves, every route
//! the router serves (`api::routes()`, the table it is built from) is
//! documented with its method, nothing undocumented is served and nothing
//! documented is missing. Regenerate the file with
//! `HERALD_UPDATE_OPENAPI=1 cargo nextest run openapi`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::TestApp;

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
