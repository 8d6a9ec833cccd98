//! The operator console in a real headless Chromium: sign-in, lockout,
//! CSRF, logout, session expiry and the groups page, against the real
//! `herald serve` binary. Screenshots go to `target/console-screenshots/`.

mod broadcasts;
mod harness;

use std::time::Duration;

use harness::{Browser, PASSWORD, Server};

/// An HTTP client that does not follow redirects, to read them.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn console_login_refuses_a_wrong_password_and_locks_after_repeated_failures() {
    let server = Server::start("[console]\nmax_failed_logins = 3\nlockout = \"15m\"\n");
    server.operator("alice", "operator");
    server.operator("bob", "operator");
    let mut browser = Browser::start("login").await;

    // Not signed in: every page leads to the login.
    browser.goto(&server.url("/console/groups")).await;
    browser.wait_path("/console/login").await;

    browser.fill("#name", "alice").await;
    browser.fill("#password", "not the password").await;
    browser.click("#sign-in").await;
    let error = browser
        .wait_text(
            "#login-error",
            "wrong name or password",
            Duration::from_secs(10),
        )
        .await;
    assert!(!error.contains("locked"), "{error}");
    browser.screenshot("wrong-password").await;

    browser.sign_in(&server, "alice").await;
    assert_eq!(browser.path().await, "/console");
    browser.screenshot("signed-in").await;

    // bob: three wrong passwords lock the account; then even the right
    // one is refused.
    browser.close().await;
    let mut browser = Browser::start("lockout").await;
    for _ in 0..3 {
        browser.goto(&server.url("/console/login")).await;
        browser.fill("#name", "bob").await;
        browser.fill("#password", "guess guess guess").await;
        browser.click("#sign-in").await;
        browser.find("#login-error").await;
    }
    browser
        .wait_text("#login-error", "locked", Duration::from_secs(10))
        .await;
    browser.fill("#name", "bob").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#sign-in").await;
    browser
        .wait_text("#login-error", "locked", Duration::from_secs(10))
        .await;
    assert!(!browser.has("#signed-in-as").await);
    browser.screenshot("locked").await;
    browser.close().await;
    let list = server.cli(&["operator", "list"], "");
    assert!(
        list.contains("bob\toperator") && list.contains("locked until"),
        "{list}"
    );

    // The cookie: HttpOnly, SameSite=Strict, scoped to /console; not
    // Secure on a loopback listener.
    let r = plain_client()
        .post(server.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=alice&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    for part in [
        "herald_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn console_cookie_is_secure_when_configured() {
    let server = Server::start("[console]\nsecure_cookies = true\n");
    server.operator("alice", "operator");
    let r = plain_client()
        .post(server.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=alice&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .expect("login");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn console_refuses_a_form_post_without_its_csrf_token() {
    let server = Server::start("");
    server.operator("alice", "operator");
    let mut browser = Browser::start("csrf").await;
    browser.sign_in(&server, "alice").await;
    // The sign-out form, stripped of its token, submitted by the browser.
    browser
        .client
        .execute(
            "const f = document.querySelector('form.who');\
             f.querySelector('input[name=csrf]').remove();\
             f.submit();",
            vec![],
        )
        .await
        .expect("script");
    browser
        .wait_text("h1", "Form refused", Duration::from_secs(10))
        .await;
    assert!(
        browser
            .text(".error-message")
            .await
            .contains("security token")
    );
    browser.screenshot("refused").await;
    // Nothing was done: still signed in.
    browser.goto(&server.url("/console")).await;
    assert_eq!(browser.text("#signed-in-as").await, "alice");
    // A wrong token is refused too.
    browser.goto(&server.url("/console/groups")).await;
    browser
        .client
        .execute(
            "const f = document.querySelector('form.who');\
             f.querySelector('input[name=csrf]').value = 'forged';\
             f.submit();",
            vec![],
        )
        .await
        .expect("script");
    browser
        .wait_text("h1", "Form refused", Duration::from_secs(10))
        .await;
    browser.close().await;
}

#[tokio::test]
async fn console_logout_ends_the_session_on_the_server() {
    let server = Server::start("");
    server.operator("alice", "operator");
    let mut browser = Browser::start("logout").await;
    browser.sign_in(&server, "alice").await;
    let token = browser
        .client
        .get_named_cookie("herald_console")
        .await
        .expect("session cookie")
        .value()
        .to_string();
    browser.click("#logout").await;
    browser
        .wait_text("#notice", "signed out", Duration::from_secs(10))
        .await;
    browser.screenshot("signed-out").await;
    browser.goto(&server.url("/console/groups")).await;
    browser.wait_path("/console/login").await;
    browser.close().await;
    // The old cookie, replayed, is worth nothing: the session is gone
    // from the server, not just from the browser.
    let r = plain_client()
        .get(server.url("/console/groups"))
        .header("cookie", format!("herald_console={token}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .starts_with("/console/login")
    );
}

#[tokio::test]
async fn console_sessions_expire_when_idle() {
    let server = Server::start("[console]\nidle_timeout = \"2s\"\n");
    server.operator("alice", "operator");
    let mut browser = Browser::start("expiry").await;
    browser.sign_in(&server, "alice").await;
    // Activity keeps it alive…
    tokio::time::sleep(Duration::from_millis(1200)).await;
    browser.goto(&server.url("/console/groups")).await;
    assert_eq!(browser.text("#signed-in-as").await, "alice");
    // …idleness ends it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    browser.goto(&server.url("/console/groups")).await;
    browser.wait_path("/console/login").await;
    browser
        .wait_text("#notice", "session has ended", Duration::from_secs(10))
        .await;
    browser.screenshot("expired").await;
    browser.close().await;
}

#[tokio::test]
async fn console_unknown_pages_get_an_html_404() {
    let server = Server::start("");
    let r = plain_client()
        .get(server.url("/console/no/such/page"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .starts_with("text/html")
    );
    assert!(r.text().await.expect("body").contains("<h1"));
    // A wrong method is a page too.
    let r = plain_client()
        .get(server.url("/console/logout"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 405);
    assert!(r.text().await.expect("body").contains("<h1"));
    // `/console/` leads to the console.
    let r = plain_client()
        .get(server.url("/console/"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/console")
    );
    // The console is not part of the API document.
    let doc = plain_client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(!doc.contains("/console"));
}

#[tokio::test]
async fn console_groups_page_uploads_a_csv_and_pages_members() {
    let server = Server::start("");
    server.operator("alice", "operator");
    let mut browser = Browser::start("groups").await;
    browser.sign_in(&server, "alice").await;
    browser.click("a[href='/console/groups']").await;
    browser.wait_path("/console/groups").await;

    let csv = server.dir.path().join("north.csv");
    let mut text = String::from("msisdn\n");
    for n in 0..150 {
        text.push_str(&format!("{}\n", crate::helpers::number(n)));
    }
    std::fs::write(&csv, &text).expect("csv");
    browser.fill("#group-name", "north").await;
    browser
        .find("#group-file")
        .await
        .send_keys(&csv.display().to_string())
        .await
        .expect("choose file");
    browser.screenshot("before-upload").await;
    browser.click("#upload").await;
    browser
        .wait_text(
            "#notice",
            "north now has 150 members",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(browser.text("td[data-group='north']").await, "150");
    browser.screenshot("uploaded").await;

    // A file with a bad line is refused whole, saying which line.
    let bad = server.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("{}\nnot a number\n", crate::helpers::number(1)),
    )
    .expect("csv");
    browser.fill("#group-name", "north").await;
    browser
        .find("#group-file")
        .await
        .send_keys(&bad.display().to_string())
        .await
        .expect("choose file");
    browser.click("#upload").await;
    browser
        .wait_text("#upload-error", "line 2", Duration::from_secs(10))
        .await;
    assert_eq!(browser.text("td[data-group='north']").await, "150");

    // Members, a hundred per page.
    browser.click("a[href='/console/groups/north']").await;
    browser.wait_path("/console/groups/north").await;
    assert_eq!(browser.text("#member-count").await, "150");
    let first_page = browser
        .client
        .find_all(fantoccini::Locator::Css("#members li"))
        .await
        .expect("members");
    assert_eq!(first_page.len(), 100);
    browser.click("#next-page").await;
    let started = std::time::Instant::now();
    let second_page = loop {
        let items = browser
            .client
            .find_all(fantoccini::Locator::Css("#members li"))
            .await
            .expect("members");
        if items.len() != 100 || started.elapsed() > Duration::from_secs(10) {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second_page.len(), 50);
    browser.screenshot("members").await;
    browser.close().await;

    // The API sees the same group: one domain, two edges.
    let key = server.api_key();
    let v: serde_json::Value = reqwest::Client::new()
        .get(server.url("/v1/groups/north"))
        .bearer_auth(key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["count"], 150);
}

/// Whether the page scrolls sideways (it must not, even on a phone).
async fn overflows(browser: &Browser) -> bool {
    browser
        .client
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .expect("script")
        .as_bool()
        .unwrap_or(true)
}

#[tokio::test]
async fn console_works_by_keyboard_alone_and_fits_a_phone_screen() {
    let server = Server::start("");
    server.operator("alice", "admin");
    let mut browser = Browser::start_sized("phone", 390, 844).await;
    browser.goto(&server.url("/console/login")).await;
    // The name field has the focus; Tab moves to the password; Enter signs in.
    let focused = browser.client.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("id").await.expect("id").as_deref(),
        Some("name")
    );
    focused.send_keys("alice\u{E004}").await.expect("type");
    browser
        .client
        .active_element()
        .await
        .expect("focus")
        .send_keys(&format!("{PASSWORD}\u{E007}"))
        .await
        .expect("type");
    browser
        .wait_text("#signed-in-as", "alice", Duration::from_secs(10))
        .await;
    for page in [
        "/console",
        "/console/compose",
        "/console/broadcasts",
        "/console/approvals",
        "/console/groups",
        "/console/audit",
    ] {
        browser.goto(&server.url(page)).await;
        browser.find("h1").await;
        assert!(
            !overflows(&browser).await,
            "{page} scrolls sideways on a phone"
        );
    }
    browser.goto(&server.url("/console/compose")).await;
    browser.screenshot("compose").await;
    browser.close().await;
}

#[tokio::test]
async fn console_sessions_work_on_every_node_of_a_redis_store() {
    let redis = crate::helpers::TestRedis::start();
    let a = Server::start(&redis.store_toml("console-a"));
    let b = Server::start(&redis.store_toml("console-b"));
    a.operator("alice", "operator");
    let mut browser = Browser::start("two-nodes").await;
    // Signed in on one node…
    browser.sign_in(&a, "alice").await;
    // …the browser sends the same cookie to the other (cookies are per
    // host, not per port), and that node knows the session from the store.
    browser.goto(&b.url("/console/groups")).await;
    assert_eq!(browser.text("#signed-in-as").await, "alice");
    browser.screenshot("second-node").await;
    // Signing out on the second node ends it on the first.
    browser.click("#logout").await;
    browser
        .wait_text("#notice", "signed out", Duration::from_secs(10))
        .await;
    browser.goto(&a.url("/console/groups")).await;
    browser.wait_path("/console/login").await;
    browser.close().await;
    // Disabling an account ends its sessions everywhere.
    let r = plain_client()
        .post(a.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=alice&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .expect("login");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string();
    let on_b = |cookie: String| {
        let url = b.url("/console/groups");
        async move {
            plain_client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("get")
                .status()
        }
    };
    assert_eq!(on_b(cookie.clone()).await, 200);
    a.cli(&["operator", "disable", "alice"], "");
    assert_eq!(on_b(cookie).await, 303);
}

#[tokio::test]
async fn console_an_open_progress_page_keeps_the_session_and_ends_with_it() {
    let server = Server::start(
        "[console]\nidle_timeout = \"2s\"\n\
         [[connectors]]\nname = \"sim\"\nkind = \"sim\"\ndelay_ms = 5\ntps = 100\n",
    );
    server.operator("alice", "operator");
    let key = server.api_key();
    let api = plain_client();
    let members: Vec<String> = (0..1000).map(crate::helpers::number).collect();
    let r = api
        .put(server.url("/v1/groups/slow"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "members": members }))
        .send()
        .await
        .expect("group");
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = api
        .post(server.url("/v1/broadcasts"))
        .bearer_auth(&key)
        .json(
            &serde_json::json!({"title": "Long", "body": "A long send.", "groups": ["slow"],
                                   "mode": "live", "requires_approval": false}),
        )
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = b["id"].as_str().expect("id").to_string();
    let login = plain_client()
        .post(server.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=alice&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    // Only the progress stream for 4 s: twice the idle timeout.
    let mut events = plain_client()
        .get(server.url(&format!("/console/broadcasts/{id}/events")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("events");
    assert_eq!(events.status(), 200);
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        let chunk = tokio::time::timeout(Duration::from_secs(2), events.chunk())
            .await
            .expect("events keep coming")
            .expect("read");
        assert!(chunk.is_some(), "the stream stayed open");
    }
    let page = plain_client()
        .get(server.url("/console/groups"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200, "watching kept the session alive");
    // Signed out elsewhere: the stream ends.
    let disable = server.cli(&["operator", "disable", "alice"], "");
    assert!(disable.contains("alice"), "{disable}");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.chunk().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the session");
}
