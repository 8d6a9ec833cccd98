//! Errors at the script module's boundary: compile problems (reported by
//! `herald script check`, `/readyz` and the reload log), run-time failures
//! of a hook (logged, counted, and replaced by the hook's fallback), and
//! template failures (422 to the caller).

use std::fmt;

use rhai::{EvalAltResult, ParseError, Position};

use super::engine::ErrorKind;

/// Where a compiled script came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Stable short name for metrics: `scripts/route.rhai`, `templates/otp.es.rhai`.
    pub label: String,
    /// The path as configured, for logs and `file:line` messages.
    pub path: String,
}

/// A file that cannot be loaded, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as configured, e.g. `scripts/route.rhai`.
    pub file: String,
    /// Its metric label (see [`Source::label`]).
    pub label: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(source: &Source, message: impl Into<String>) -> Self {
        Problem {
            file: source.path.clone(),
            label: source.label.clone(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn parse(source: &Source, err: &ParseError) -> Self {
        let pos = err.position();
        Problem {
            file: source.path.clone(),
            label: source.label.clone(),
            line: pos.line(),
            column: pos.position(),
            message: err.err_type().to_string(),
        }
    }
}

/// `file:line:column: message`, the shape editors and CI logs link to.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A hook call that failed; the gateway applies the hook's fallback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {hook}: {message}")]
pub struct ScriptError {
    /// The file as configured, and the line when known: `scripts/route.rhai:12`.
    pub location: String,
    /// Metric label of the file: `scripts/route.rhai`.
    pub script: String,
    pub hook: &'static str,
    pub kind: ErrorKind,
    pub message: String,
}

impl ScriptError {
    /// From a Rhai run-time error of `hook` in `source`.
    pub(crate) fn eval(source: &Source, hook: &'static str, err: &EvalAltResult) -> Self {
        let kind = ErrorKind::of(err);
        let inner = err.unwrap_inner();
        let message = match kind {
            ErrorKind::Operations => format!("{inner} (over scripts.max_operations)"),
            ErrorKind::Timeout => "ran past its wall-time limit (scripts.timeout)".to_string(),
            ErrorKind::CallDepth => format!("{inner} (over scripts.max_call_depth)"),
            _ => flatten(&inner.to_string()),
        };
        ScriptError {
            location: locate(&source.path, innermost_position(err)),
            script: source.label.clone(),
            hook,
            kind,
            message,
        }
    }

    /// A hook returned something that is not a decision it may make.
    pub(crate) fn decision(source: &Source, hook: &'static str, message: String) -> Self {
        ScriptError {
            location: source.path.clone(),
            script: source.label.clone(),
            hook,
            kind: ErrorKind::Decision,
            message,
        }
    }
}

/// The position of the innermost error that has one: where the script
/// actually failed, not where the hook was entered.
fn innermost_position(err: &EvalAltResult) -> Position {
    let mut best = err.position();
    let mut cur = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = cur {
        if !inner.position().is_none() {
            best = inner.position();
        }
        cur = inner;
    }
    best
}

fn locate(script: &str, pos: Position) -> String {
    match pos.line() {
        Some(line) => format!("{script}:{line}"),
        None => script.to_string(),
    }
}

/// Rhai's messages carry their own "(line 3, position 5)" and call chains
/// over several lines; one line per log entry reads better.
fn flatten(message: &str) -> String {
    message.replace('\n', "; ")
}

/// Why a template could not render. The first two are the caller's doing;
/// the others are the template's (logged and counted as script errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No `NAME.rhai` (nor any locale of it) is loaded.
    #[error("no template named '{name}' is loaded")]
    Unknown { name: String },
    /// The template has locales but neither the asked one (if any) nor a
    /// default.
    #[error("template '{name}' has no default and no locale {}", .locale.as_deref().map_or_else(|| "was given".to_string(), |l| format!("'{l}'")))]
    NoLocale {
        name: String,
        locale: Option<String>,
    },
    /// The template reads a variable `vars` does not hold.
    #[error("template '{template}' needs variable '{variable}', which `vars` does not have")]
    MissingVariable { template: String, variable: String },
    /// The template failed or ran over a bound.
    #[error("template '{template}' failed: {error}")]
    Failed {
        template: String,
        error: ScriptError,
    },
    /// It evaluated to something other than text.
    #[error("template '{template}' produced {produced}, not text")]
    NotText { template: String, produced: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_like_compiler_errors() {
        let p = Problem {
            file: "scripts/route.rhai".into(),
            label: "scripts/route.rhai".into(),
            line: Some(3),
            column: Some(7),
            message: "Expecting ';'".into(),
        };
        assert_eq!(p.to_string(), "scripts/route.rhai:3:7: Expecting ';'");
        let source = Source {
            label: "templates/x.rhai".into(),
            path: "/srv/templates/x.rhai".into(),
        };
        assert_eq!(
            Problem::new(&source, "unreadable").to_string(),
            "/srv/templates/x.rhai: unreadable"
        );
    }
}
