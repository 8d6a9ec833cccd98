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
//! interpreter ([`Plain`](super::plain::Plain)) — it is the one script on the path of every
//! templated message — once loading has checked, by rendering probe values
//! both ways, that the shortcut gives what Rhai gives. Anything else (a
//! float or map variable, a missing one, an expression) goes through Rhai.

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Scope};

use super::engine::DeadlineGuard;
use super::error::{ScriptError, TemplateError};
use super::library::{Library, normalise_locale};
use super::value::{describe, json_to_dynamic};
use crate::config::ScriptsConfig;

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
    limits: &ScriptsConfig,
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

#[cfg(test)]
mod tests {
    use super::super::plain::Plain;
    use super::*;

    fn engine() -> Engine {
        super::super::engine::build(
            &ScriptsConfig::default(),
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
