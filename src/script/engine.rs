//! The one sandboxed Rhai engine, built once per gateway and shared by every
//! call (it is costly to build; `sync` makes it `Send + Sync`).
//!
//! What a script cannot do:
//! - touch files, the network or processes: Rhai has no such functions, the
//!   module resolver is a dummy (no `import` from disk, and `import` is not
//!   even a keyword here), `eval` is disabled, and `sleep` — the one standard
//!   function that blocks the thread — is replaced by an error;
//! - run unbounded: operations, call depth, expression depth (at compile
//!   time), string, array and map sizes, variables and functions are capped,
//!   and a wall-time deadline per call is enforced from the progress callback.
//!
//! Every limit Rhai offers is off by default except call depth, so each one
//! is set here explicitly from the `[scripts]` config.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, OptimizationLevel};

use super::helpers::{self, ScriptEnv};
use crate::config::ScriptsConfig;

/// Variables alive at once in one call; generous for real scripts, a cap
/// on memory for hostile ones.
const MAX_VARIABLES: usize = 1_000;
/// Functions one file may define.
const MAX_FUNCTIONS: usize = 500;
/// The deadline is checked every this many operations: reading the clock on
/// every operation would cost more than most operations.
const DEADLINE_CHECK_EVERY: u64 = 128;

thread_local! {
    /// Deadline of the script call running on this thread. Rhai's progress
    /// callback only gets the operation count, and calls run synchronously on
    /// the calling thread, so a thread-local is how the callback finds it.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets the wall-time deadline of the call about to run on this thread;
/// restores the previous one when dropped (so nested calls are safe).
pub(crate) struct DeadlineGuard {
    previous: Option<Instant>,
}

impl DeadlineGuard {
    pub(crate) fn start(timeout: Duration) -> Self {
        let deadline = Instant::now().checked_add(timeout);
        DeadlineGuard {
            previous: DEADLINE.with(|d| d.replace(deadline)),
        }
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
    }
}

/// The value a call is terminated with when it runs past its deadline.
const TIMEOUT_TOKEN: &str = "herald: script wall-time limit";

fn past_deadline(operations: u64) -> Option<Dynamic> {
    if operations % DEADLINE_CHECK_EVERY != 0 {
        return None;
    }
    let deadline = DEADLINE.with(Cell::get)?;
    (Instant::now() >= deadline).then(|| Dynamic::from(TIMEOUT_TOKEN))
}

/// Builds the sandboxed engine with Herald's helper functions registered.
pub(crate) fn build(limits: &ScriptsConfig, env: ScriptEnv) -> Engine {
    let mut engine = Engine::new();
    // Engine::new installs a file module resolver; scripts load nothing.
    engine.set_module_resolver(DummyModuleResolver::new());
    engine.set_max_modules(0);
    engine.disable_symbol("import");
    engine.disable_symbol("eval");

    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_string_size(limits.max_string_bytes);
    engine.set_max_array_size(limits.max_array_len);
    engine.set_max_map_size(limits.max_map_len);
    engine.set_max_variables(MAX_VARIABLES);
    engine.set_max_functions(MAX_FUNCTIONS);
    engine.on_progress(past_deadline);

    // A misspelt property (`msg.clas`) is an error, not a silent `()`.
    engine.set_fail_on_invalid_map_property(true);
    engine.set_optimization_level(OptimizationLevel::Simple);

    engine.on_print(|text| tracing::debug!(target: "herald::script", "print: {text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "herald::script", script = source.unwrap_or("-"), line = pos.line(), "debug: {text}");
    });

    helpers::register(&mut engine, env);
    engine
}

/// How a call failed, as counted in `herald_script_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file does not compile.
    Compile,
    /// An error raised by the script (`throw`, a type error, a missing
    /// function or variable).
    Runtime,
    /// Ran more than `max_operations`.
    Operations,
    /// Ran past its wall-time `timeout`.
    Timeout,
    /// Recursed deeper than `max_call_depth`.
    CallDepth,
    /// Built a string, array or map over its limit, or too many variables.
    Size,
    /// Returned a value that is not a valid decision for the hook.
    Decision,
}

impl ErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Compile => "compile",
            ErrorKind::Runtime => "runtime",
            ErrorKind::Operations => "operations",
            ErrorKind::Timeout => "timeout",
            ErrorKind::CallDepth => "call_depth",
            ErrorKind::Size => "size",
            ErrorKind::Decision => "decision",
        }
    }

    /// Classifies a run-time error (the innermost one of a call chain).
    pub(crate) fn of(err: &EvalAltResult) -> ErrorKind {
        match err.unwrap_inner() {
            EvalAltResult::ErrorTooManyOperations(_) => ErrorKind::Operations,
            EvalAltResult::ErrorTerminated(..) => ErrorKind::Timeout,
            EvalAltResult::ErrorStackOverflow(_) => ErrorKind::CallDepth,
            EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorTooManyVariables(_)
            | EvalAltResult::ErrorTooManyModules(_) => ErrorKind::Size,
            _ => ErrorKind::Runtime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_guards_nest_and_restore() {
        assert!(DEADLINE.with(Cell::get).is_none());
        {
            let _outer = DeadlineGuard::start(Duration::from_secs(60));
            let outer = DEADLINE.with(Cell::get);
            assert!(outer.is_some());
            {
                let _inner = DeadlineGuard::start(Duration::ZERO);
                assert!(past_deadline(DEADLINE_CHECK_EVERY).is_some());
                assert!(
                    past_deadline(1).is_none(),
                    "the clock is read only every few operations"
                );
            }
            assert_eq!(DEADLINE.with(Cell::get), outer);
        }
        assert!(DEADLINE.with(Cell::get).is_none());
        assert!(past_deadline(DEADLINE_CHECK_EVERY).is_none());
    }
}
