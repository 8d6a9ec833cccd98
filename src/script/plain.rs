//! The interpreter-free renderer of plain templates: one back-tick string
//! of text and `${name}`s, which is what nearly every template is. Loading
//! recognises such a template only after rendering probe values both ways
//! and finding that this gives exactly what Rhai gives.

use rhai::{Dynamic, Engine, ImmutableString, Scope};

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
    pub(crate) fn render(
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
