//! `herald script check [DIR]` and `herald script test ROUTE_SCRIPT
//! --message JSON`: what an operator runs before (or instead of) deploying
//! a script. Both work without a running gateway.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use serde::Deserialize;
use serde_json::json;

use super::engine;
use super::helpers::ScriptEnv;
use super::library::{Dirs, Hook, Library};
use super::{RouteDecision, ScriptMessage, Scripts, SubmitDecision};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{Class, format_micros};
use crate::text::Encoding;

/// `herald script …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ScriptCommand {
    /// Compile every script and template; print errors as file:line; exit 1 on any.
    Check {
        /// A directory holding scripts/ and templates/ (or one of those
        /// directories itself). Default: `scripts.dir` and
        /// `scripts.templates_dir` from the config.
        dir: Option<PathBuf>,
    },
    /// Run a routing script on one message and print its decision as JSON
    /// (`on_submit` first, when the file defines it).
    Test {
        /// The script file, e.g. scripts/route.rhai.
        script: PathBuf,
        /// The message: {"to", "body", "class"?, "from"?, "tags"?}, or a
        /// message as a script sees it: `encoding` and `segments` are
        /// computed from `body` and, when given, must agree; `not_before`
        /// is ignored.
        #[arg(long)]
        message: String,
        /// Pretend it is this time (RFC 3339), e.g. to try quiet hours.
        #[arg(long)]
        at: Option<String>,
    },
}

/// Runs `cmd`, writing its report to `out`.
///
/// # Errors
/// A one-line summary when anything failed (the binary exits 1).
pub fn run(cmd: ScriptCommand, config: &Config, out: &mut dyn Write) -> Result<(), String> {
    match cmd {
        ScriptCommand::Check { dir } => check(dir.as_deref(), config, out),
        ScriptCommand::Test {
            script,
            message,
            at,
        } => test(&script, &message, at.as_deref(), config, out),
    }
}

fn env_for(config: &Config) -> ScriptEnv {
    ScriptEnv::offline(
        config
            .connectors
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
    )
}

/// Which directories `check` reads for `dir`.
fn dirs_for(
    dir: Option<&Path>,
    config: &Config,
) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
    let Some(dir) = dir else {
        return Ok((
            Some(config.scripts.dir.clone()),
            Some(config.scripts.templates_dir.clone()),
        ));
    };
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let (scripts, templates) = (dir.join("scripts"), dir.join("templates"));
    if scripts.is_dir() || templates.is_dir() {
        return Ok((Some(scripts), Some(templates)));
    }
    if dir.file_name().is_some_and(|n| n == "templates") {
        Ok((None, Some(dir.to_path_buf())))
    } else {
        Ok((Some(dir.to_path_buf()), None))
    }
}

fn check(dir: Option<&Path>, config: &Config, out: &mut dyn Write) -> Result<(), String> {
    let (scripts, templates) = dirs_for(dir, config)?;
    let engine = engine::build(&config.scripts, env_for(config));
    let lib = Library::load(
        &engine,
        &Dirs {
            scripts: scripts.as_deref(),
            templates: templates.as_deref(),
        },
        &Library::default(),
    );
    let w = |e: std::io::Error| e.to_string();
    for file in lib.loaded_files() {
        writeln!(out, "ok     {file}").map_err(w)?;
    }
    for problem in lib.problems() {
        writeln!(out, "error  {problem}").map_err(w)?;
    }
    let hooks = lib.hooks_defined();
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    writeln!(
        out,
        "{} compiled, {}; hooks: {}",
        plural(lib.loaded_files().len(), "file"),
        plural(lib.problems().len(), "error"),
        if hooks.is_empty() {
            "none".to_string()
        } else {
            hooks.join(", ")
        }
    )
    .map_err(w)?;
    match lib.problems().len() {
        0 => Ok(()),
        1 => Err("1 script error".into()),
        n => Err(format!("{n} script errors")),
    }
}

/// The message given to `script test`: the fields a caller sends, plus
/// those a script sees, so a message copied from a script's view (logged
/// or printed while debugging) can be tried as it is. Unknown fields are
/// still refused: a typo must not silently test another message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestMessage {
    to: String,
    body: String,
    #[serde(default)]
    class: Option<Class>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Computed from `body`; checked when given.
    #[serde(default)]
    encoding: Option<Encoding>,
    /// Computed from `body`; checked when given.
    #[serde(default)]
    segments: Option<u32>,
    /// What `on_submit` may set; not an input, so ignored.
    #[serde(default, rename = "not_before")]
    _not_before: Option<serde_json::Value>,
}

/// A given `encoding` or `segments` that the body does not produce: the
/// copied message is not the one the script saw (e.g. its body was
/// changed or mis-escaped on the way).
fn check_computed(given: &TestMessage, msg: &ScriptMessage) -> Result<(), String> {
    if let Some(encoding) = given.encoding
        && encoding != msg.encoding
    {
        return Err(format!(
            "--message: `encoding` is {:?} but the body is {:?} (encoding and segments are computed from body)",
            encoding.as_str(),
            msg.encoding.as_str()
        ));
    }
    if let Some(segments) = given.segments
        && segments != msg.segments
    {
        return Err(format!(
            "--message: `segments` is {segments} but the body makes {} (encoding and segments are computed from body)",
            msg.segments
        ));
    }
    Ok(())
}

fn test(
    path: &Path,
    message: &str,
    at: Option<&str>,
    config: &Config,
    out: &mut dyn Write,
) -> Result<(), String> {
    let given: TestMessage =
        serde_json::from_str(message).map_err(|e| format!("--message: {e}"))?;
    let to = crate::text::parse_msisdn_with(
        &given.to,
        config.default_region(),
        config.messages.number_policy,
    )
    .map_err(|e| format!("--message: `to` {e}"))?;
    let mut env = env_for(config);
    if let Some(at) = at {
        let t: jiff::Timestamp = at
            .parse()
            .map_err(|e| format!("--at {at:?}: {e} (use RFC 3339, e.g. 2026-01-31T22:00:00Z)"))?;
        env.clock = Arc::new(move || t);
    }
    let limits = config.scripts.clone();
    let engine = engine::build(&limits, env.clone());
    let lib = Library::single(&engine, path).map_err(|p| p.to_string())?;
    if lib.hook(Hook::Route).is_none() {
        return Err(format!("{} defines no `fn route(msg)`", path.display()));
    }
    let scripts = Scripts::with_library(engine, limits, env, lib, Arc::new(Metrics::new()));
    let mut msg = ScriptMessage::new(
        to.into_string(),
        given.class.unwrap_or(Class::Transactional),
        given.body.clone(),
        given.from.clone(),
        given.tags.clone(),
    );
    check_computed(&given, &msg)?;
    let mut report = serde_json::Map::new();
    if scripts.has_hook(Hook::OnSubmit) {
        match scripts
            .try_on_submit(&mut msg, &|_| Ok(()))
            .map_err(|e| e.to_string())?
        {
            SubmitDecision::Reject(reason) => {
                report.insert("decision".into(), json!("reject"));
                report.insert("hook".into(), json!("on_submit"));
                report.insert("reason".into(), json!(reason));
                return print(out, report);
            }
            SubmitDecision::Accept { not_before } => {
                report.insert(
                    "on_submit".into(),
                    json!({
                        "body": msg.body,
                        "from": msg.from,
                        "tags": msg.tags,
                        "not_before": not_before.map(format_micros),
                    }),
                );
            }
        }
    }
    match scripts.try_route(&msg).map_err(|e| e.to_string())? {
        RouteDecision::Default => {
            report.insert("decision".into(), json!("default"));
            report.insert("connectors".into(), json!(config.default_route()));
        }
        RouteDecision::Connectors(names) => {
            report.insert("decision".into(), json!("route"));
            report.insert("connectors".into(), json!(names));
        }
        RouteDecision::Reject(reason) => {
            report.insert("decision".into(), json!("reject"));
            report.insert("hook".into(), json!("route"));
            report.insert("reason".into(), json!(reason));
        }
    }
    print(out, report)
}

fn print(
    out: &mut dyn Write,
    report: serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    writeln!(out, "{}", serde_json::Value::Object(report)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route that shows what the script saw: `sim` for a one-part UCS-2
    /// message, the default route otherwise.
    const ROUTE: &str = "fn route(msg) { if msg.encoding == \"ucs2\" && msg.segments == 1 { \"sim\" } else { () } }\n";

    fn try_message(config: &Config, message: &str) -> Result<serde_json::Value, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("route.rhai");
        std::fs::write(&script, ROUTE).expect("write");
        let mut out = Vec::new();
        run(
            ScriptCommand::Test {
                script,
                message: message.to_string(),
                at: None,
            },
            config,
            &mut out,
        )?;
        Ok(serde_json::from_slice(&out).expect("json report"))
    }

    #[test]
    fn a_message_as_a_script_sees_it_can_be_tried_as_it_is() {
        let seen = r#"{"body":"Привет","class":"transactional","encoding":"ucs2","from":null,
            "not_before":null,"segments":1,"tags":["a"],"to":"+447400123456"}"#;
        let report = try_message(&Config::default(), seen).expect("accepted");
        assert_eq!(report["decision"], "route", "{report}");
        assert_eq!(report["connectors"], json!(["sim"]));
    }

    #[test]
    fn given_encoding_and_segments_must_match_the_body() {
        let config = Config::default();
        let err = try_message(
            &config,
            r#"{"to":"+447400123456","body":"Привет","segments":2}"#,
        )
        .expect_err("segments checked");
        assert!(
            err.contains("`segments` is 2 but the body makes 1"),
            "{err}"
        );
        let err = try_message(
            &config,
            r#"{"to":"+447400123456","body":"hello","encoding":"ucs2"}"#,
        )
        .expect_err("encoding checked");
        assert!(
            err.contains("`encoding` is \"ucs2\" but the body is \"gsm7\""),
            "{err}"
        );
        let err = try_message(
            &config,
            r#"{"to":"+447400123456","body":"hello","encoding":"utf8"}"#,
        )
        .expect_err("unknown encoding");
        assert!(err.starts_with("--message:"), "{err}");
    }

    #[test]
    fn the_number_policy_applies_to_tried_messages() {
        // Ofcom's drama range: well-formed, not assigned in the metadata.
        let message = r#"{"to":"+447700900123","body":"hello"}"#;
        let err = try_message(&Config::default(), message).expect_err("strict");
        assert!(err.contains("`to` is not a valid phone number"), "{err}");
        let mut config = Config::default();
        config.messages.number_policy = crate::text::NumberPolicy::E164;
        let report = try_message(&config, message).expect("e164");
        assert_eq!(report["decision"], "default", "{report}");
    }
}
