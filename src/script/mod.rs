//! Operator scripts and templates in Rhai: routing
//! (`scripts/route.rhai`, `fn route(msg)`), hooks (`on_submit`,
//! `on_inbound`, `cap_area`) and message templates (`templates/NAME.rhai`).
//!
//! [`Scripts`] is the one entry point. It owns the sandboxed engine (built
//! once), the compiled snapshot (swapped whole on reload; calls clone an
//! `Arc` and never hold a lock while running), and the failure policy: a
//! script that errors or runs over a bound never stops the gateway — the
//! hook's fallback applies (default route, message accepted unchanged, …),
//! and the error is logged with `file:line` and counted in
//! `herald_script_errors_total{script,kind}`. Templates are the exception:
//! a template that fails refuses its request (422), since there is no text
//! to send.
//!
//! - [`engine`]: the sandbox and its bounds; [`helpers`]: functions lent to
//!   scripts; [`library`]: compiling and per-file reload.
//! - [`route`], [`hooks`], [`template`]: what each call means.
//! - [`reload`]: the debounced file watcher; [`cli`]: `herald script`.

pub mod cli;
pub mod engine;
pub mod error;
pub mod helpers;
pub mod hooks;
pub mod library;
mod plain;
pub mod reload;
pub mod route;
pub mod template;
pub mod value;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Scope};

pub use engine::ErrorKind;
pub use error::{Problem, ScriptError, Source, TemplateError};
pub use helpers::{Clock, ScriptEnv};
pub use hooks::{InboundDecision, SubmitDecision};
pub use library::Hook;
pub use route::{RouteDecision, order_by_health};
pub use value::ScriptMessage;

use crate::config::ScriptsConfig;
use crate::connector::InboundMessage;
use crate::metrics::Metrics;
use engine::DeadlineGuard;
use library::{Dirs, Library, Loaded};

/// The scripts and templates of one gateway.
pub struct Scripts {
    engine: Engine,
    limits: ScriptsConfig,
    env: ScriptEnv,
    /// `None` when scripts are disabled.
    dirs: Option<(PathBuf, PathBuf)>,
    library: RwLock<Arc<Library>>,
    /// One reload at a time (the watcher and a manual reload may race).
    reloading: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts")
            .field("dirs", &self.dirs)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Scripts {
    /// Builds the engine and loads `config`'s directories. Never fails: files
    /// that do not compile are reported by [`Scripts::problems`] (and logged),
    /// and the gateway runs without them.
    pub fn load(config: &ScriptsConfig, env: ScriptEnv, metrics: Arc<Metrics>) -> Arc<Scripts> {
        let dirs = config
            .enabled
            .then(|| (config.dir.clone(), config.templates_dir.clone()));
        let scripts = Arc::new(Scripts {
            engine: engine::build(config, env.clone()),
            limits: config.clone(),
            env,
            dirs,
            library: RwLock::new(Arc::new(Library::default())),
            reloading: Mutex::new(()),
            metrics,
        });
        if scripts.dirs.is_none() {
            tracing::info!("scripts are disabled (scripts.enabled = false)");
        }
        scripts.reload();
        scripts
    }

    /// Scripts over a library loaded by other means (the CLI), not watched.
    pub(crate) fn with_library(
        engine: Engine,
        limits: ScriptsConfig,
        env: ScriptEnv,
        library: Library,
        metrics: Arc<Metrics>,
    ) -> Scripts {
        Scripts {
            engine,
            limits,
            env,
            dirs: None,
            library: RwLock::new(Arc::new(library)),
            reloading: Mutex::new(()),
            metrics,
        }
    }

    /// The script and template directories, when enabled.
    pub fn dirs(&self) -> Option<(&Path, &Path)> {
        self.dirs.as_ref().map(|(s, t)| (s.as_path(), t.as_path()))
    }

    /// The bounds calls run under.
    pub fn limits(&self) -> &ScriptsConfig {
        &self.limits
    }

    /// Re-reads both directories and swaps in the new snapshot. Files that
    /// fail to compile keep their previous version; new problems are logged
    /// with `file:line` and counted. Returns the problems now present.
    pub fn reload(&self) -> Vec<Problem> {
        let Some((scripts_dir, templates_dir)) = &self.dirs else {
            return Vec::new();
        };
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.snapshot();
        let next = Library::load(
            &self.engine,
            &Dirs {
                scripts: Some(scripts_dir),
                templates: Some(templates_dir),
            },
            &previous,
        );
        for p in next.problems() {
            if !previous.problems().contains(p) {
                tracing::error!(problem = %p, "script not loaded; its previous version, if any, keeps serving");
                self.metrics
                    .script_error(&p.label, ErrorKind::Compile.as_str());
            }
        }
        for p in previous.problems() {
            if !next.problems().iter().any(|n| n.file == p.file) {
                tracing::info!(file = %p.file, "script problem resolved");
            }
        }
        let problems = next.problems().to_vec();
        self.metrics.set_scripts_broken(problems.len());
        self.metrics.script_reloaded();
        tracing::info!(
            files = next.loaded_files().len(),
            hooks = ?next.hooks_defined(),
            problems = problems.len(),
            scripts = %scripts_dir.display(),
            templates = %templates_dir.display(),
            "scripts loaded"
        );
        *self.library.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        problems
    }

    /// The current snapshot. The lock is held only to clone the `Arc`.
    fn snapshot(&self) -> Arc<Library> {
        self.library
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Files that fail to load right now, as `file:line:col: message`.
    pub fn problems(&self) -> Vec<String> {
        self.snapshot()
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Paths of every loaded script and template.
    pub fn loaded_files(&self) -> Vec<String> {
        self.snapshot().loaded_files()
    }

    /// Whether `hook` is defined by a loaded script.
    pub fn has_hook(&self, hook: Hook) -> bool {
        self.snapshot().hook(hook).is_some()
    }

    /// Logs and counts a hook failure (the caller applies the fallback).
    pub fn report(&self, err: &ScriptError) {
        tracing::warn!(
            script = %err.location,
            hook = err.hook,
            kind = err.kind.as_str(),
            "script failed: {}",
            err.message
        );
        self.metrics.script_error(&err.script, err.kind.as_str());
    }

    /// The scripts as loaded now: every hook and template a message goes
    /// through should come from one snapshot, so a reload in the middle of
    /// an admission never mixes versions.
    pub fn current(&self) -> Current<'_> {
        Current {
            scripts: self,
            lib: self.snapshot(),
        }
    }

    /// [`Current::try_route`] on the current snapshot.
    ///
    /// # Errors
    /// See [`Current::try_route`].
    pub fn try_route(&self, msg: &ScriptMessage) -> Result<RouteDecision, ScriptError> {
        self.current().try_route(msg)
    }

    /// [`Current::route`] on the current snapshot.
    pub fn route(&self, msg: &ScriptMessage) -> RouteDecision {
        self.current().route(msg)
    }

    /// [`Current::try_on_submit`] on the current snapshot.
    ///
    /// # Errors
    /// See [`Current::try_on_submit`].
    pub fn try_on_submit(
        &self,
        msg: &mut ScriptMessage,
        check: &dyn Fn(&ScriptMessage) -> Result<(), String>,
    ) -> Result<SubmitDecision, ScriptError> {
        self.current().try_on_submit(msg, check)
    }

    /// [`Current::on_submit`] on the current snapshot.
    pub fn on_submit(
        &self,
        msg: &mut ScriptMessage,
        check: &dyn Fn(&ScriptMessage) -> Result<(), String>,
    ) -> SubmitDecision {
        self.current().on_submit(msg, check)
    }

    /// [`Current::try_on_inbound`] on the current snapshot.
    ///
    /// # Errors
    /// See [`Current::try_on_inbound`].
    pub fn try_on_inbound(&self, mo: &InboundMessage) -> Result<InboundDecision, ScriptError> {
        self.current().try_on_inbound(mo)
    }

    /// [`Current::on_inbound`] on the current snapshot.
    pub fn on_inbound(&self, mo: &InboundMessage) -> InboundDecision {
        self.current().on_inbound(mo)
    }

    /// [`Current::try_cap_area`] on the current snapshot.
    ///
    /// # Errors
    /// See [`Current::try_cap_area`].
    pub fn try_cap_area(&self, area_desc: &str) -> Result<Vec<String>, ScriptError> {
        self.current().try_cap_area(area_desc)
    }

    /// [`Current::cap_area`] on the current snapshot.
    pub fn cap_area(&self, area_desc: &str) -> Vec<String> {
        self.current().cap_area(area_desc)
    }

    /// [`Current::render`] on the current snapshot.
    ///
    /// # Errors
    /// See [`Current::render`].
    pub fn render(
        &self,
        name: &str,
        locale: Option<&str>,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        self.current().render(name, locale, vars)
    }
}

/// One snapshot of the scripts, for the calls of one message (see
/// [`Scripts::current`]). Holding it keeps that version alive; it holds no
/// lock.
pub struct Current<'a> {
    scripts: &'a Scripts,
    lib: Arc<Library>,
}

impl Current<'_> {
    /// Whether `hook` is defined in this snapshot.
    pub fn has_hook(&self, hook: Hook) -> bool {
        self.lib.hook(hook).is_some()
    }

    /// Calls `hook(arg)` under the bounds; `None` when no script defines it.
    fn call(
        &self,
        hook: Hook,
        arg: Dynamic,
    ) -> Option<(&Loaded, Result<Dynamic, Box<EvalAltResult>>)> {
        let loaded = self.lib.hook(hook)?;
        let result = {
            let _deadline = DeadlineGuard::start(self.scripts.limits.timeout);
            let mut scope = Scope::new();
            // Top-level statements are not run per call: scripts are made of
            // functions, and re-running a file's body would cost every call.
            let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
            self.scripts.engine.call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                &loaded.ast,
                hook.name(),
                (arg,),
            )
        };
        Some((loaded, result))
    }

    /// Runs `route(msg)`.
    ///
    /// # Errors
    /// The script failed, ran over a bound, or returned something that is
    /// not a route (e.g. an unknown connector).
    pub fn try_route(&self, msg: &ScriptMessage) -> Result<RouteDecision, ScriptError> {
        let Some((loaded, result)) = self.call(Hook::Route, Dynamic::from_map(msg.to_map())) else {
            return Ok(RouteDecision::Default);
        };
        match result {
            Ok(value) => route::decide(&value, &self.scripts.env)
                .map_err(|e| ScriptError::decision(&loaded.source, "route", e)),
            Err(err) => match helpers::rejection(&err) {
                Some(reason) => Ok(RouteDecision::Reject(reason)),
                None => Err(ScriptError::eval(&loaded.source, "route", &err)),
            },
        }
    }

    /// Runs `route(msg)`; on failure logs, counts and uses the default route.
    pub fn route(&self, msg: &ScriptMessage) -> RouteDecision {
        self.try_route(msg).unwrap_or_else(|e| {
            self.scripts.report(&e);
            RouteDecision::Default
        })
    }

    /// Runs `on_submit(msg)`, applying its rewrites to `msg` when `check`
    /// accepts them (`check` is admission's validation of a rewritten
    /// message: sender, tags, length).
    ///
    /// # Errors
    /// The script failed, ran over a bound, or returned something invalid
    /// (including a rewrite `check` refuses); `msg` is then unchanged.
    pub fn try_on_submit(
        &self,
        msg: &mut ScriptMessage,
        check: &dyn Fn(&ScriptMessage) -> Result<(), String>,
    ) -> Result<SubmitDecision, ScriptError> {
        let Some((loaded, result)) = self.call(Hook::OnSubmit, Dynamic::from_map(msg.submit_map()))
        else {
            return Ok(SubmitDecision::Accept { not_before: None });
        };
        let invalid = |e: String| ScriptError::decision(&loaded.source, "on_submit", e);
        match result {
            Ok(value) if value.is_unit() => Ok(SubmitDecision::Accept { not_before: None }),
            Ok(value) => {
                let now = (self.scripts.env.clock)().as_microsecond();
                let mut rewritten = msg.clone();
                let not_before =
                    hooks::apply_submit(&value, &mut rewritten, now).map_err(invalid)?;
                if rewritten != *msg {
                    check(&rewritten)
                        .map_err(|e| invalid(format!("on_submit's rewrite is invalid: {e}")))?;
                    *msg = rewritten;
                }
                Ok(SubmitDecision::Accept { not_before })
            }
            Err(err) => match helpers::rejection(&err) {
                Some(reason) => Ok(SubmitDecision::Reject(reason)),
                None => Err(ScriptError::eval(&loaded.source, "on_submit", &err)),
            },
        }
    }

    /// Runs `on_submit(msg)`; on failure logs, counts and accepts `msg`
    /// unchanged.
    pub fn on_submit(
        &self,
        msg: &mut ScriptMessage,
        check: &dyn Fn(&ScriptMessage) -> Result<(), String>,
    ) -> SubmitDecision {
        self.try_on_submit(msg, check).unwrap_or_else(|e| {
            self.scripts.report(&e);
            SubmitDecision::Accept { not_before: None }
        })
    }

    /// Runs `on_inbound(mo)`.
    ///
    /// # Errors
    /// The script failed, ran over a bound, or returned an invalid decision.
    pub fn try_on_inbound(&self, mo: &InboundMessage) -> Result<InboundDecision, ScriptError> {
        let Some((loaded, result)) =
            self.call(Hook::OnInbound, Dynamic::from_map(hooks::inbound_map(mo)))
        else {
            return Ok(InboundDecision::default());
        };
        result
            .map_err(|err| ScriptError::eval(&loaded.source, "on_inbound", &err))
            .and_then(|value| {
                hooks::inbound_decision(&value)
                    .map_err(|e| ScriptError::decision(&loaded.source, "on_inbound", e))
            })
    }

    /// Runs `on_inbound(mo)`; on failure logs, counts and returns the
    /// default handling.
    pub fn on_inbound(&self, mo: &InboundMessage) -> InboundDecision {
        self.try_on_inbound(mo).unwrap_or_else(|e| {
            self.scripts.report(&e);
            InboundDecision::default()
        })
    }

    /// Runs `cap_area(area_desc)`.
    ///
    /// # Errors
    /// The script failed, ran over a bound, or returned invalid group names.
    pub fn try_cap_area(&self, area_desc: &str) -> Result<Vec<String>, ScriptError> {
        let Some((loaded, result)) = self.call(Hook::CapArea, value::str_value(area_desc)) else {
            return Ok(Vec::new());
        };
        result
            .map_err(|err| ScriptError::eval(&loaded.source, "cap_area", &err))
            .and_then(|value| {
                hooks::groups(&value)
                    .map_err(|e| ScriptError::decision(&loaded.source, "cap_area", e))
            })
    }

    /// Runs `cap_area(area_desc)`; on failure logs, counts and returns no
    /// groups.
    pub fn cap_area(&self, area_desc: &str) -> Vec<String> {
        self.try_cap_area(area_desc).unwrap_or_else(|e| {
            self.scripts.report(&e);
            Vec::new()
        })
    }

    /// Renders template `name` in `locale` (falling back `es-MX` → `es` →
    /// default) with `vars` in scope.
    ///
    /// # Errors
    /// Unknown template or missing variable (the caller's mistake), or a
    /// template that fails or produces no text (logged and counted too).
    pub fn render(
        &self,
        name: &str,
        locale: Option<&str>,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let result = template::render(
            &self.scripts.engine,
            &self.scripts.limits,
            &self.lib,
            name,
            locale,
            vars,
        );
        match &result {
            Err(TemplateError::Failed { error, .. }) => self.scripts.report(error),
            Err(TemplateError::NotText { template, produced }) => {
                tracing::warn!(%template, "template produced {produced}, not text");
                self.scripts.metrics.script_error(
                    &label_of_template(&self.lib, name, locale),
                    ErrorKind::Decision.as_str(),
                );
            }
            _ => {}
        }
        result
    }
}

/// The metric label of the template file `render` used.
fn label_of_template(lib: &Library, name: &str, locale: Option<&str>) -> String {
    template::candidates(name, locale)
        .iter()
        .find_map(|key| lib.template(key))
        .map_or_else(|| format!("templates/{name}"), |t| t.source.label.clone())
}
