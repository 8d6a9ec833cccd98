//! Tests of the script facade: decisions, templates, reload, and hostile
//! scripts (each stopped within its bound while later calls keep working).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::config::ScriptsConfig;
use crate::model::Class;

/// A scripts/ and templates/ pair in a temp dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("scripts")).expect("scripts dir");
        std::fs::create_dir(dir.path().join("templates")).expect("templates dir");
        Fixture { dir }
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(rel), text).expect("write");
        self
    }

    fn config(&self) -> ScriptsConfig {
        ScriptsConfig {
            dir: self.dir.path().join("scripts"),
            templates_dir: self.dir.path().join("templates"),
            ..ScriptsConfig::default()
        }
    }

    fn load(&self) -> (Arc<Scripts>, Arc<Metrics>) {
        self.load_with(self.config())
    }

    fn load_with(&self, config: ScriptsConfig) -> (Arc<Scripts>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let env = ScriptEnv::offline(vec!["a".into(), "b".into(), "sim".into()]);
        (Scripts::load(&config, env, metrics.clone()), metrics)
    }
}

fn msg(to: &str, class: Class) -> ScriptMessage {
    ScriptMessage::new(to, class, "hello", None, Vec::new())
}

fn uk() -> ScriptMessage {
    msg("+447400123456", Class::Transactional)
}

fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().expect("object")
}

#[test]
fn route_returns_names_arrays_default_or_rejects() {
    let f = Fixture::new();
    f.write(
        "scripts/route.rhai",
        r#"
        fn route(msg) {
            if msg.to.starts_with("+44") { return ["a", "b"]; }
            if msg.to.starts_with("+1") { return "b"; }
            if msg.class == "marketing" { reject("no marketing here"); }
            ()
        }
        "#,
    );
    let (s, _) = f.load();
    assert!(s.problems().is_empty(), "{:?}", s.problems());
    assert_eq!(
        s.route(&uk()),
        RouteDecision::Connectors(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        s.route(&msg("+12015550123", Class::Otp)),
        RouteDecision::Connectors(vec!["b".into()])
    );
    assert_eq!(
        s.route(&msg("+33612345678", Class::Marketing)),
        RouteDecision::Reject("no marketing here".into())
    );
    assert_eq!(
        s.route(&msg("+33612345678", Class::Otp)),
        RouteDecision::Default
    );
}

#[test]
fn helpers_give_country_region_and_connector_health() {
    let f = Fixture::new();
    f.write(
        "scripts/route.rhai",
        r#"
        fn route(msg) {
            if country_code(msg.to) != 44 || region(msg.to) != "GB" { throw "wrong country"; }
            if region("+80012345678") != "" { throw "800 has no region"; }
            if !connector_ready("a") || connector_ready("nope") || has_connector("nope") { throw "health"; }
            if connectors().len() != 3 { throw "connectors"; }
            if configured(["x", "b", "sim", 7]) != ["b", "sim"] { throw "configured"; }
            let h = local_hour("Europe/London");
            if h < 0 || h > 23 || local_weekday("UTC") < 1 { throw "clock"; }
            "a"
        }
        "#,
    );
    let (s, _) = f.load();
    assert_eq!(
        s.try_route(&uk()),
        Ok(RouteDecision::Connectors(vec!["a".into()]))
    );
}

#[test]
fn a_route_naming_an_unknown_connector_falls_back_to_the_default_and_is_counted() {
    let f = Fixture::new();
    f.write("scripts/route.rhai", r#"fn route(msg) { "carrier-x" }"#);
    let (s, metrics) = f.load();
    let err = s.try_route(&uk()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decision);
    assert!(err.message.contains("carrier-x"), "{err}");
    assert_eq!(s.route(&uk()), RouteDecision::Default);
    let text = metrics.render([0; 4], 0);
    assert!(
        text.contains(
            r#"herald_script_errors_total{script="scripts/route.rhai",kind="decision"} 1"#
        ),
        "{text}"
    );
}

#[test]
fn without_a_route_script_the_default_route_is_used() {
    let f = Fixture::new();
    let (s, _) = f.load();
    assert_eq!(s.try_route(&uk()), Ok(RouteDecision::Default));
    assert_eq!(
        s.try_on_submit(&mut uk(), &|_| Ok(())),
        Ok(SubmitDecision::Accept { not_before: None })
    );
}

#[test]
fn on_submit_rewrites_defers_and_rejects() {
    let f = Fixture::new();
    f.write(
        "scripts/hooks.rhai",
        r#"
        fn on_submit(msg) {
            if msg.body == "stop" { reject("stopped"); }
            msg.body = `${msg.body} -- reply STOP to opt out`;
            msg.tags.push("footer");
            msg.from = "Shop";
            if msg.class == "marketing" { msg.not_before = unix_now() + 3600; }
            msg
        }
        "#,
    );
    let (s, _) = f.load();
    let mut m = msg("+447400123456", Class::Marketing);
    let SubmitDecision::Accept {
        not_before: Some(at),
    } = s.on_submit(&mut m, &|_| Ok(()))
    else {
        panic!("expected a deferral");
    };
    let in_an_hour = crate::model::now_micros() + 3_600_000_000;
    assert!((at - in_an_hour).abs() < 5_000_000, "{at} vs {in_an_hour}");
    assert_eq!(m.body, "hello -- reply STOP to opt out");
    assert_eq!(m.from.as_deref(), Some("Shop"));
    assert_eq!(m.tags, vec!["footer".to_string()]);
    assert_eq!(m.segments, 1);

    let mut stop = ScriptMessage::new("+447400123456", Class::Otp, "stop", None, vec![]);
    assert_eq!(
        s.on_submit(&mut stop, &|_| Ok(())),
        SubmitDecision::Reject("stopped".into())
    );
}

#[test]
fn on_inbound_and_cap_area_return_decisions() {
    let f = Fixture::new();
    f.write(
        "scripts/inbound.rhai",
        r#"
        fn on_inbound(mo) {
            switch mo.keyword {
                "JOIN" => "https://example.com/join",
                "HELP" => #{ reply: "Text JOIN to subscribe" },
                _ => ()
            }
        }
        fn cap_area(area_desc) {
            if area_desc.contains("Coast") { ["coast", "all-staff"] } else { () }
        }
        "#,
    );
    let (s, _) = f.load();
    let mo = |body: &str| crate::connector::InboundMessage {
        connector: "sim".into(),
        from: "+447400123456".into(),
        to: "12345".into(),
        body: body.into(),
    };
    assert_eq!(
        s.on_inbound(&mo("join please")).webhook.as_deref(),
        Some("https://example.com/join")
    );
    assert_eq!(
        s.on_inbound(&mo("help")).reply.as_deref(),
        Some("Text JOIN to subscribe")
    );
    assert_eq!(s.on_inbound(&mo("hi")), InboundDecision::default());
    assert_eq!(s.cap_area("North Coast"), vec!["coast", "all-staff"]);
    assert!(s.cap_area("Inland").is_empty());
}

#[test]
fn templates_render_with_vars_and_fall_back_by_locale() {
    let f = Fixture::new();
    f.write("templates/otp.rhai", "`Your ${app_name} code is ${code}`")
        .write(
            "templates/otp.es.rhai",
            "`Tu código de ${app_name} es ${code}`",
        )
        .write("templates/otp.es-MX.rhai", "`Código ${app_name}: ${code}`");
    let (s, _) = f.load();
    let v = vars(json!({"app_name": "Herald", "code": 123456}));
    assert_eq!(
        s.render("otp", None, &v).as_deref(),
        Ok("Your Herald code is 123456")
    );
    assert_eq!(
        s.render("otp", Some("es-MX"), &v).as_deref(),
        Ok("Código Herald: 123456")
    );
    assert_eq!(
        s.render("otp", Some("es-AR"), &v).as_deref(),
        Ok("Tu código de Herald es 123456")
    );
    assert_eq!(
        s.render("otp", Some("fr"), &v).as_deref(),
        Ok("Your Herald code is 123456")
    );
}

#[test]
fn unknown_templates_and_missing_variables_are_named() {
    let f = Fixture::new();
    f.write("templates/otp.rhai", "`Your ${app_name} code is ${code}`")
        .write("templates/promo.fr.rhai", "`Bonjour`");
    let (s, metrics) = f.load();
    let err = s.render("nope", None, &vars(json!({}))).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Unknown {
            name: "nope".into()
        }
    );
    let err = s
        .render("otp", None, &vars(json!({"app_name": "Herald"})))
        .unwrap_err();
    assert!(
        matches!(&err, TemplateError::MissingVariable { variable, .. } if variable == "code"),
        "{err}"
    );
    let err = s.render("promo", Some("de"), &vars(json!({}))).unwrap_err();
    assert!(matches!(err, TemplateError::NoLocale { .. }), "{err}");
    assert!(
        !metrics
            .render([0; 4], 0)
            .contains("herald_script_errors_total{"),
        "caller mistakes are not script errors"
    );
}

#[test]
fn a_template_that_is_not_text_is_an_error() {
    let f = Fixture::new();
    f.write("templates/n.rhai", "40 + 2");
    let (s, _) = f.load();
    let err = s.render("n", None, &vars(json!({}))).unwrap_err();
    assert!(matches!(err, TemplateError::NotText { .. }), "{err}");
}

#[test]
fn a_broken_edit_keeps_the_previous_version_serving() {
    let f = Fixture::new();
    f.write("scripts/route.rhai", r#"fn route(msg) { "a" }"#);
    let (s, metrics) = f.load();
    assert_eq!(s.route(&uk()), RouteDecision::Connectors(vec!["a".into()]));

    f.write(
        "scripts/route.rhai",
        "fn route(msg) {\n  \"b\"\n  let = ;\n}\n",
    );
    let problems = s.reload();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let shown = problems[0].to_string();
    assert!(shown.contains("route.rhai:3:"), "{shown}");
    assert_eq!(
        s.route(&uk()),
        RouteDecision::Connectors(vec!["a".into()]),
        "the previous version keeps serving"
    );
    // Reloading the same broken content does not count it again.
    s.reload();
    let text = metrics.render([0; 4], 0);
    assert!(
        text.contains(
            r#"herald_script_errors_total{script="scripts/route.rhai",kind="compile"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("herald_scripts_broken 1"), "{text}");

    f.write("scripts/route.rhai", r#"fn route(msg) { "b" }"#);
    assert!(s.reload().is_empty());
    assert_eq!(s.route(&uk()), RouteDecision::Connectors(vec!["b".into()]));
    assert!(
        metrics
            .render([0; 4], 0)
            .contains("herald_scripts_broken 0")
    );
}

#[test]
fn a_hook_defined_twice_or_with_wrong_parameters_is_a_problem() {
    let f = Fixture::new();
    f.write("scripts/a.rhai", r#"fn route(msg) { "a" }"#).write(
        "scripts/b.rhai",
        r#"fn route(msg) { "b" } fn on_submit() { () }"#,
    );
    let (s, _) = f.load();
    let problems = s.problems().join("\n");
    assert!(problems.contains("also defined in"), "{problems}");
    assert!(problems.contains("must take one parameter"), "{problems}");
    assert_eq!(s.route(&uk()), RouteDecision::Connectors(vec!["a".into()]));
}

#[test]
fn disabled_scripts_load_nothing() {
    let f = Fixture::new();
    f.write("scripts/route.rhai", r#"fn route(msg) { "a" }"#);
    let (s, _) = f.load_with(ScriptsConfig {
        enabled: false,
        ..f.config()
    });
    assert_eq!(s.route(&uk()), RouteDecision::Default);
    assert!(s.loaded_files().is_empty());
}

// ---- hostile scripts ----

/// Loads `body` as `fn route(msg)` and asserts the call fails with `kind`,
/// quickly, falls back to the default route, and that a good script loaded
/// next to it still answers.
fn assert_stopped(route_body: &str, kind: ErrorKind, config: impl Fn(&Fixture) -> ScriptsConfig) {
    assert_stopped_by(route_body, &[kind], config);
}

/// Like [`assert_stopped`], accepting any of `kinds`: growth one element at
/// a time re-measures the whole value each step, so the operations or
/// wall-time bound may stop it before the size bound does. Either way it is
/// stopped.
fn assert_stopped_by(
    route_body: &str,
    kinds: &[ErrorKind],
    config: impl Fn(&Fixture) -> ScriptsConfig,
) {
    let f = Fixture::new();
    f.write(
        "scripts/route.rhai",
        &format!("fn route(msg) {{\n{route_body}\n}}\n"),
    )
    .write("scripts/hooks.rhai", "fn cap_area(a) { \"ok\" }");
    let (s, metrics) = f.load_with(config(&f));
    assert!(s.problems().is_empty(), "{:?}", s.problems());
    let started = Instant::now();
    let err = s.try_route(&uk()).unwrap_err();
    let took = started.elapsed();
    assert!(kinds.contains(&err.kind), "{err} ({:?})", err.kind);
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    assert!(err.location.contains("route.rhai"), "{err}");
    assert_eq!(s.route(&uk()), RouteDecision::Default);
    assert_eq!(s.cap_area("x"), vec!["ok"], "other hooks keep working");
    // The counted run is the second one (`route`), which on a busy machine
    // may meet another of the bounds first.
    let page = metrics.render([0; 4], 0);
    assert!(
        kinds
            .iter()
            .any(|k| page.contains(&format!("kind=\"{}\"", k.as_str()))),
        "counted"
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_max_operations() {
    assert_stopped("loop { }", ErrorKind::Operations, Fixture::config);
}

#[test]
fn an_infinite_loop_is_stopped_by_the_wall_time_bound() {
    let started = Instant::now();
    assert_stopped("let x = 0; loop { x += 1; }", ErrorKind::Timeout, |f| {
        ScriptsConfig {
            max_operations: 1_000_000_000,
            timeout: Duration::from_millis(50),
            ..f.config()
        }
    });
    // Two calls (try_route and route), each stopped near 50 ms.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn deep_recursion_is_stopped_by_the_call_depth_bound() {
    assert_stopped(
        "deeper(0) }\nfn deeper(n) { deeper(n + 1)",
        ErrorKind::CallDepth,
        Fixture::config,
    );
}

#[test]
fn recursion_through_function_pointers_is_stopped_too() {
    // rhai issue 880: recursive calls through closures once overflowed the
    // native stack; 1.19 counts them as call levels.
    assert_stopped(
        "again(0) }\nfn again(n) { let f = Fn(\"again\"); f.call(n + 1)",
        ErrorKind::CallDepth,
        Fixture::config,
    );
}

#[test]
fn string_growth_is_stopped_by_the_size_bound() {
    assert_stopped(
        "let s = \"xxxxxxxx\"; loop { s += s; }",
        ErrorKind::Size,
        Fixture::config,
    );
}

#[test]
fn array_growth_is_stopped_by_the_size_bound() {
    assert_stopped_by(
        "let a = []; loop { a.push([1, 2, 3, 4]); }",
        &[ErrorKind::Size, ErrorKind::Timeout, ErrorKind::Operations],
        Fixture::config,
    );
    assert_stopped(
        "let a = []; a.pad(100000000, 0); a",
        ErrorKind::Size,
        Fixture::config,
    );
    assert_stopped(
        "let b = blob(100000000); b",
        ErrorKind::Size,
        Fixture::config,
    );
}

#[test]
fn map_growth_is_stopped_by_a_bound() {
    // Rhai measures a map when it is passed or returned, not on every
    // `m[k] = v`; a map grown in place is stopped by the operations bound,
    // which also bounds its memory (a few bytes per operation).
    assert_stopped_by(
        "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }",
        &[ErrorKind::Size, ErrorKind::Timeout, ErrorKind::Operations],
        Fixture::config,
    );
}

#[test]
fn sleep_is_refused_rather_than_blocking() {
    assert_stopped("sleep(60); \"a\"", ErrorKind::Runtime, Fixture::config);
    assert_stopped("sleep(60.0); \"a\"", ErrorKind::Runtime, Fixture::config);
}

#[test]
fn file_access_is_a_missing_function() {
    for attempt in [
        r#"open_file("/etc/passwd")"#,
        r#"read_file("/etc/passwd")"#,
        r#"system("id")"#,
        r#"let f = Fn("eval"); f.call("1")"#,
    ] {
        assert_stopped(attempt, ErrorKind::Runtime, Fixture::config);
    }
}

#[test]
fn eval_and_import_do_not_compile() {
    for (source, needle) in [
        ("fn route(msg) { eval(\"1\") }", "eval"),
        ("import \"os\" as os;\nfn route(msg) { () }", "import"),
    ] {
        let f = Fixture::new();
        f.write("scripts/route.rhai", source);
        let (s, _) = f.load();
        let problems = s.problems().join("\n");
        assert!(problems.contains("route.rhai:"), "{problems}");
        assert!(problems.to_lowercase().contains(needle), "{problems}");
        assert_eq!(s.route(&uk()), RouteDecision::Default);
    }
}

#[test]
fn deeply_nested_expressions_are_refused_at_compile_time() {
    let f = Fixture::new();
    let nested = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    f.write(
        "scripts/route.rhai",
        &format!("fn route(msg) {{ {nested} }}"),
    );
    let (s, _) = f.load();
    assert_eq!(s.problems().len(), 1, "{:?}", s.problems());
}

#[test]
fn a_template_cannot_loop_and_one_that_builds_a_huge_string_is_refused() {
    let f = Fixture::new();
    f.write("templates/spin.rhai", "`${ if true { while true {} } }`")
        .write("templates/huge.rhai", "`${ \"x\".pad(100000000, \"y\") }`");
    let (s, metrics) = f.load();
    let problems = s.problems().join("\n");
    assert!(
        problems.contains("spin.rhai:1:"),
        "templates are expressions: {problems}"
    );
    assert_eq!(
        s.render("spin", None, &vars(json!({}))),
        Err(TemplateError::Unknown {
            name: "spin".into()
        })
    );
    let err = s.render("huge", None, &vars(json!({}))).unwrap_err();
    assert!(
        matches!(&err, TemplateError::Failed { error, .. } if error.kind == ErrorKind::Size),
        "{err}"
    );
    assert!(
        metrics
            .render([0; 4], 0)
            .contains(r#"herald_script_errors_total{script="templates/huge.rhai",kind="size"} 1"#)
    );
}

#[test]
fn the_shipped_scripts_and_templates_compile_and_route_sensibly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = ScriptsConfig {
        dir: root.join("scripts"),
        templates_dir: root.join("templates"),
        ..ScriptsConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let s = Scripts::load(&config, ScriptEnv::offline(vec!["sim".into()]), metrics);
    assert!(s.problems().is_empty(), "{:?}", s.problems());
    assert!(s.has_hook(Hook::Route) && s.has_hook(Hook::OnSubmit));
    // Only `sim` is configured: everything routes to names that exist.
    for to in [
        "+447400123456",
        "+12015550123",
        "+33612345678",
        "+5215512345678",
    ] {
        match s.try_route(&msg(to, Class::Transactional)) {
            Ok(RouteDecision::Default) => {}
            Ok(RouteDecision::Connectors(c)) => assert_eq!(c, vec!["sim".to_string()]),
            other => panic!("{to}: {other:?}"),
        }
    }
    let v = vars(json!({"app_name": "Herald", "code": "482913", "ttl_minutes": 10}));
    for locale in [None, Some("es-MX"), Some("fr-CA"), Some("de")] {
        let text = s.render("otp", locale, &v).expect("otp renders");
        assert!(text.contains("482913"), "{text}");
    }
}
