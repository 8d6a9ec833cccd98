//! Message templates: `templates/NAME.rhai` and `templates/NAME.LOCALE.rhai`,
//! each one Rhai expression (usually a back-tick string) evaluated with the
//! request's `vars` in scope:
//!
//! ```text
//! `Your ${app_name} code is ${code}. It expires in ${ttl_minutes} min.`
//! ```
//!
//! A locale falls back one subtag at a time, then to the default:
//! `es-MX` → `es` → `NAME.rhai`. Locales match case-insensitively and `_`
//! reads as `-`.
//!
//! Most templates are just that: one back-tick string whose `${…}` are
//! plain variable names. Such a template is rendered without the
//! interpreter ([`Plain`]) — it is the one script on the path of every
//! templated message — once loading has checked, by rendering probe values
//! both ways, that the shortcut gives what Rhai gives. Anything else (a
//! float or map variable, a missing one, an expression) goes through Rhai.

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Scope};

use super::engine::{DeadlineGuard, Limits};
use super::error::{ScriptError, TemplateError};
use super::library::{Library, normalise_locale};
use super::value::{describe, json_to_dynamic};

/// The library keys to try for `name` in `locale`, most specific first.
pub(crate) fn candidates(name: &str, locale: Option<&str>) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    if let Some(mut locale) = locale.and_then(normalise_locale) {
        loop {
            keys.push(format!("{name}.{locale}"));
            match locale.rfind('-') {
                Some(i) => locale.truncate(i),
                None => break,
            }
        }
    }
    keys.push(name.to_string());
    keys
}

/// Whether `name` could name a template file (so it never reaches a path).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Renders template `name` for `locale` with `vars`.
pub(crate) fn render(
    engine: &Engine,
    limits: &Limits,
    lib: &Library,
    name: &str,
    locale: Option<&str>,
    vars: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, TemplateError> {
    if !valid_name(name) || !lib.has_template(name) {
        return Err(TemplateError::Unknown {
            name: name.to_string(),
        });
    }
    let found = match locale {
        // The common case needs no key building.
        None => lib.template(name),
        Some(_) => candidates(name, locale)
            .iter()
            .find_map(|key| lib.template(key)),
    };
    let Some(template) = found else {
        return Err(TemplateError::NoLocale {
            name: name.to_string(),
            locale: locale.map(str::to_string),
        });
    };
    if let Some(text) = template
        .plain
        .as_deref()
        .and_then(|p| p.render(vars, limits.max_string_bytes))
    {
        return Ok(text);
    }
    let mut scope = Scope::with_capacity(vars.len());
    for (key, value) in vars {
        scope.push_constant_dynamic(key.as_str(), json_to_dynamic(value));
    }
    let result = {
        let _deadline = DeadlineGuard::start(limits.timeout);
        engine.eval_ast_with_scope::<Dynamic>(&mut scope, &template.ast)
    };
    match result {
        Ok(value) => match value.read_lock::<ImmutableString>() {
            Some(text) => Ok(text.to_string()),
            None => Err(TemplateError::NotText {
                template: name.to_string(),
                produced: describe(&value),
            }),
        },
        Err(err) => match err.unwrap_inner() {
            EvalAltResult::ErrorVariableNotFound(variable, _) => {
                Err(TemplateError::MissingVariable {
                    template: name.to_string(),
                    variable: variable.clone(),
                })
            }
            _ => Err(TemplateError::Failed {
                template: name.to_string(),
                error: ScriptError::eval(&template.source, "template", &err),
            }),
        },
    }
}

/// A template that is one back-tick string of text and `${name}`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plain {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl Plain {
    /// `source` as a plain template, if it is one and renders as Rhai
    /// renders it (checked with `engine` on `ast`, the compiled `source`).
    pub(crate) fn recognise(engine: &Engine, source: &str, ast: &rhai::AST) -> Option<Plain> {
        let plain = Plain::parse(source)?;
        let mut scope = Scope::new();
        let mut probes = serde_json::Map::new();
        for (i, name) in plain.vars().enumerate() {
            // Control characters never appear in template text, so a probe
            // cannot be mistaken for text around it.
            let probe = format!("\u{1}{i}\u{2}");
            scope.push_constant(name, ImmutableString::from(probe.as_str()));
            probes.insert(name.to_string(), serde_json::Value::String(probe));
        }
        let by_rhai = engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, ast)
            .ok()?
            .into_immutable_string()
            .ok()?;
        (plain.render(&probes, usize::MAX).as_deref() == Some(by_rhai.as_str())).then_some(plain)
    }

    /// The parts of `` `text ${name} text` ``; `None` for anything else
    /// (more than one string, an expression inside `${}`, a back-tick or a
    /// backslash in the text, comments).
    fn parse(source: &str) -> Option<Plain> {
        let body = source.trim().strip_prefix('`')?.strip_suffix('`')?;
        if body.contains(['`', '\\', '\r']) {
            return None;
        }
        let mut parts = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find("${") {
            let (text, after) = rest.split_at(start);
            let end = after.find('}')?;
            let name = &after[2..end];
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return None;
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Some(Plain { parts })
    }

    fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text, when every variable is a string, an integer or a boolean
    /// (rendered as Rhai renders them) and the result is at most
    /// `max_bytes`; `None` sends the request through Rhai, which reports
    /// what is wrong.
    fn render(
        &self,
        vars: &serde_json::Map<String, serde_json::Value>,
        max_bytes: usize,
    ) -> Option<String> {
        use serde_json::Value;
        use std::fmt::Write;
        let mut out = String::with_capacity(160);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => match vars.get(name)? {
                    Value::String(s) => out.push_str(s),
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Value::Number(n) => write!(out, "{}", n.as_i64()?).ok()?,
                    _ => return None,
                },
            }
            if out.len() > max_bytes {
                return None;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        super::super::engine::build(
            &Limits::default(),
            super::super::helpers::ScriptEnv::offline(Vec::new()),
        )
    }

    fn plain(source: &str) -> Option<Plain> {
        let engine = engine();
        let ast = engine.compile_expression(source).ok()?;
        Plain::recognise(&engine, source, &ast)
    }

    #[test]
    fn plain_templates_are_recognised_and_render_as_rhai_does() {
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
            serde_json::json!({"app": "Herald", "code": "048213", "ttl": 10, "ok": true, "neg": -3}),
        )
        .expect("vars");
        let engine = engine();
        for source in [
            "`Your ${app} code is ${code}. It expires in ${ttl} min.`",
            "`${code}`",
            "`${code}${code} ${ok} ${neg}`",
            "  `multi\nline ${app}\n`  \n",
            "`no variables at all`",
            "`héllo ✓ ${app} $ {app} $app {code}`",
        ] {
            let p = plain(source).unwrap_or_else(|| panic!("{source:?} is plain"));
            let ast = engine.compile_expression(source).expect("compiles");
            let mut scope = Scope::new();
            for (k, v) in &vars {
                scope.push_constant_dynamic(k.as_str(), json_to_dynamic(v));
            }
            let by_rhai: String = engine.eval_ast_with_scope(&mut scope, &ast).expect("evals");
            assert_eq!(p.render(&vars, usize::MAX), Some(by_rhai), "{source:?}");
        }
    }

    #[test]
    fn anything_else_is_left_to_rhai() {
        for source in [
            "`${code.len()}`",
            "`${ code }`",
            "`a` + `b`",
            "\"quoted ${code}\"",
            "`${1 + 2}`",
            "// comment\n`${code}`",
            "`tick `` ${code}`",
            "`${code}` // trailing",
        ] {
            assert!(plain(source).is_none(), "{source:?} is not plain");
        }
        let p = plain("`${code} ${ttl}`").expect("plain");
        let vars = |v: serde_json::Value| -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_value(v).expect("vars")
        };
        // Missing, float, null or structured values: Rhai decides.
        for v in [
            serde_json::json!({"code": "1"}),
            serde_json::json!({"code": "1", "ttl": 1.5}),
            serde_json::json!({"code": "1", "ttl": null}),
            serde_json::json!({"code": "1", "ttl": [1]}),
        ] {
            assert_eq!(p.render(&vars(v), usize::MAX), None);
        }
        // Over the string limit: Rhai reports it.
        assert_eq!(
            p.render(&vars(serde_json::json!({"code": "12345", "ttl": 1})), 4),
            None
        );
    }

    #[test]
    fn locales_fall_back_one_subtag_at_a_time() {
        assert_eq!(
            candidates("otp", Some("es-MX")),
            ["otp.es-mx", "otp.es", "otp"]
        );
        assert_eq!(
            candidates("otp", Some("es_mx")),
            ["otp.es-mx", "otp.es", "otp"]
        );
        assert_eq!(
            candidates("otp", Some("zh-Hant-TW")),
            ["otp.zh-hant-tw", "otp.zh-hant", "otp.zh", "otp"]
        );
        assert_eq!(candidates("otp", None), ["otp"]);
        assert_eq!(candidates("otp", Some("../etc")), ["otp"]);
    }
}
