//! `route`: what one script call costs, in process (no HTTP): `route(msg)`,
//! `on_submit(msg)` and rendering a template, each timed call by call over
//! a mix of destinations and classes with the scripts of `--scripts`
//! (default: the working directory's `scripts/` and `templates/`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;

use super::BenchArgs;
use super::report::{Latency, Summary};
use crate::config::ScriptsConfig;
use crate::metrics::Metrics;
use crate::model::Class;
use crate::script::{Hook, ScriptEnv, ScriptMessage, Scripts};
use crate::text::test_number;

/// Destinations beyond the +1 test numbers, so prefix rules all fire.
const NUMBERS: [&str; 4] = [
    "+447400123456",
    "+33612345678",
    "+34612345678",
    "+80012345678",
];

fn messages() -> Vec<ScriptMessage> {
    let mut out = Vec::new();
    for (i, class) in Class::ALL.iter().enumerate() {
        for n in 0..16u32 {
            let to = match n % 6 {
                0..=3 => NUMBERS[(n % 4) as usize].to_string(),
                _ => test_number(n * 7 + i as u32).to_string(),
            };
            out.push(ScriptMessage::new(
                to,
                *class,
                format!("Herald benchmark message {n}"),
                None,
                vec!["bench".into()],
            ));
        }
    }
    out
}

fn time<T>(calls: u32, mut f: impl FnMut(usize) -> T) -> Latency {
    for i in 0..1_000 {
        black_box(f(i));
    }
    let mut nanos = Vec::with_capacity(calls as usize);
    for i in 0..calls as usize {
        let t = Instant::now();
        black_box(f(i));
        nanos.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Latency::of_nanos(&mut nanos)
}

/// Times `--route-calls` calls of each kind.
///
/// # Errors
/// When the scripts do not load or define no `route`.
pub fn route_calls(args: &BenchArgs) -> anyhow::Result<Summary> {
    let dir = args.scripts.clone().unwrap_or_else(|| PathBuf::from("."));
    let config = ScriptsConfig {
        dir: dir.join("scripts"),
        templates_dir: dir.join("templates"),
        watch: false,
        ..ScriptsConfig::default()
    };
    let scripts = Scripts::load(
        &config,
        ScriptEnv::offline(vec!["sim".into()]),
        Arc::new(Metrics::new()),
    );
    if !scripts.problems().is_empty() {
        bail!("scripts do not load: {:?}", scripts.problems());
    }
    if !scripts.has_hook(Hook::Route) {
        bail!("{} defines no route(msg)", config.dir.display());
    }
    let msgs = messages();
    let started = Instant::now();
    let mut calls = BTreeMap::new();
    calls.insert(
        "route".to_string(),
        time(args.route_calls, |i| scripts.route(&msgs[i % msgs.len()])),
    );
    if scripts.has_hook(Hook::OnSubmit) {
        calls.insert(
            "on_submit".to_string(),
            time(args.route_calls, |i| {
                let mut m = msgs[i % msgs.len()].clone();
                scripts.on_submit(&mut m, &|_| Ok(()))
            }),
        );
    }
    if let Some(name) = &args.template {
        let vars: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"app_name":"Herald","code":"482913","ttl_minutes":10}"#)?;
        let locales = [None, Some("es-MX"), Some("fr")];
        if let Err(e) = scripts.render(name, None, &vars) {
            bail!("template {name}: {e}");
        }
        calls.insert(
            format!("template {name}"),
            time(args.route_calls, |i| {
                scripts.render(name, locales[i % locales.len()], &vars)
            }),
        );
    }
    Ok(Summary {
        scenario: "route".into(),
        description: format!(
            "in-process script calls with {}, one thread",
            config.dir.display()
        ),
        messages: u64::from(args.route_calls),
        accept_to_receipt_per_sec: None,
        accept_per_sec: None,
        admission_latency: None,
        head_of_line: None,
        backlog: None,
        script_calls: Some(calls),
        store_calls: None,
        otp: None,
        broadcast: None,
        store: None,
        // In process: no carrier at all.
        connector: String::new(),
        peak_rss_mib: 0.0,
        smsc_peak_rss_mib: 0.0,
        data_mib: 0.0,
        seconds: started.elapsed().as_secs_f64(),
    })
}
