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
        /// The message: {"to", "body", "class"?, "from"?, "tags"?}.
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

/// The message given to `script test`.
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
    let to = crate::text::parse_msisdn(&given.to, config.default_region())
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
        given.body,
        given.from,
        given.tags,
    );
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
