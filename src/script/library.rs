//! The compiled set of scripts and templates: one immutable snapshot, built
//! from the directories and swapped whole on reload.
//!
//! Loading is per file: a file that fails to compile is not loaded, and the
//! version compiled before it (if any) keeps serving; the problem is kept
//! with the snapshot until the file is fixed or removed. Unchanged files are
//! not compiled again.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use rhai::{AST, Engine};

use super::error::{Problem, Source};
use super::plain::Plain;

/// Largest script or template file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files read from one directory.
const MAX_FILES: usize = 1_000;

/// The functions Herald calls in `scripts/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Route,
    OnSubmit,
    OnInbound,
    CapArea,
}

impl Hook {
    pub const ALL: [Hook; 4] = [Hook::Route, Hook::OnSubmit, Hook::OnInbound, Hook::CapArea];

    /// The Rhai function name; each takes one argument.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Route => "route",
            Hook::OnSubmit => "on_submit",
            Hook::OnInbound => "on_inbound",
            Hook::CapArea => "cap_area",
        }
    }

    fn param(self) -> &'static str {
        match self {
            Hook::Route | Hook::OnSubmit => "msg",
            Hook::OnInbound => "mo",
            Hook::CapArea => "area_desc",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One compiled file.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    hash: u64,
    pub source: Arc<Source>,
    pub ast: Arc<AST>,
    /// For a template that is plain text and variables: the shortcut
    /// [`Plain`] renders it with.
    pub plain: Option<Arc<Plain>>,
}

/// A file's state: what serves, and whether its current content is broken.
#[derive(Debug, Clone, Default)]
struct FileState {
    loaded: Option<Loaded>,
    /// Hash of the content that failed, and why.
    broken: Option<(u64, Problem)>,
}

/// A snapshot of everything loaded.
#[derive(Debug, Default)]
pub(crate) struct Library {
    /// By file name (`route.rhai`).
    scripts: BTreeMap<String, FileState>,
    /// By key: `otp`, `otp.es-mx` (locale lower-cased).
    templates: BTreeMap<String, FileState>,
    template_names: HashSet<String>,
    hooks: [Option<Loaded>; 4],
    problems: Vec<Problem>,
}

/// Where scripts and templates are read from (`None`: none of that kind).
#[derive(Debug, Clone)]
pub(crate) struct Dirs<'a> {
    pub scripts: Option<&'a Path>,
    pub templates: Option<&'a Path>,
}

impl Library {
    /// Loads both directories, reusing what `previous` compiled from
    /// unchanged files and keeping its version of files that now fail.
    pub(crate) fn load(engine: &Engine, dirs: &Dirs<'_>, previous: &Library) -> Library {
        let mut lib = Library::default();
        let mut problems = Vec::new();
        for (name, path) in rhai_files(dirs.scripts, "scripts", &mut problems) {
            let source = Source {
                label: format!("scripts/{name}"),
                path: path.display().to_string(),
            };
            let state = load_file(
                engine,
                &path,
                source,
                previous.scripts.get(&name),
                Kind::Script,
            );
            lib.scripts.insert(name, state);
        }
        for (name, path) in rhai_files(dirs.templates, "templates", &mut problems) {
            let source = Source {
                label: format!("templates/{name}"),
                path: path.display().to_string(),
            };
            let Some(key) = template_key(&name) else {
                problems.push(Problem::new(
                    &source,
                    "not a template file name: use NAME.rhai or NAME.LOCALE.rhai \
                     (letters, digits, '-' and '_'; e.g. otp.es-MX.rhai)",
                ));
                continue;
            };
            let state = load_file(
                engine,
                &path,
                source,
                previous.templates.get(&key),
                Kind::Template,
            );
            if state.loaded.is_some()
                && let Some((name, _)) = split_key(&key)
            {
                lib.template_names.insert(name.to_string());
            }
            lib.templates.insert(key, state);
        }
        lib.index_hooks(&mut problems);
        for state in lib.scripts.values().chain(lib.templates.values()) {
            if let Some((_, p)) = &state.broken {
                problems.push(p.clone());
            }
        }
        problems.sort_by(|a, b| a.file.cmp(&b.file).then(a.line.cmp(&b.line)));
        lib.problems = problems;
        lib
    }

    /// One script file as the whole set (`herald script test`).
    ///
    /// # Errors
    /// The file cannot be read or does not compile.
    pub(crate) fn single(engine: &Engine, path: &Path) -> Result<Library, Problem> {
        let name = path.file_name().map_or_else(
            || "script.rhai".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let source = Source {
            label: format!("scripts/{name}"),
            path: path.display().to_string(),
        };
        let state = load_file(engine, path, source, None, Kind::Script);
        if let Some((_, problem)) = state.broken {
            return Err(problem);
        }
        let mut lib = Library::default();
        lib.scripts.insert(name, state);
        let mut problems = Vec::new();
        lib.index_hooks(&mut problems);
        lib.problems = problems;
        Ok(lib)
    }

    /// Finds each hook in the loaded scripts; a hook defined twice, or with
    /// the wrong number of parameters, is a problem (the first file wins).
    fn index_hooks(&mut self, problems: &mut Vec<Problem>) {
        for state in self.scripts.values() {
            let Some(loaded) = &state.loaded else {
                continue;
            };
            for f in loaded.ast.iter_functions() {
                let Some(hook) = Hook::ALL.into_iter().find(|h| h.name() == f.name) else {
                    continue;
                };
                if f.params.len() != 1 {
                    problems.push(Problem::new(
                        &loaded.source,
                        format!(
                            "`{}` must take one parameter, `{}({})`; Herald never calls this one",
                            hook.name(),
                            hook.name(),
                            hook.param()
                        ),
                    ));
                    continue;
                }
                match &self.hooks[hook.index()] {
                    Some(first) => problems.push(Problem::new(
                        &loaded.source,
                        format!(
                            "`{}` is also defined in {}, which is the one Herald calls",
                            hook.name(),
                            first.source.path
                        ),
                    )),
                    None => self.hooks[hook.index()] = Some(loaded.clone()),
                }
            }
        }
    }

    /// The file defining `hook`, if any.
    pub(crate) fn hook(&self, hook: Hook) -> Option<&Loaded> {
        self.hooks[hook.index()].as_ref()
    }

    /// The template for `key` (`otp`, `otp.es`), if loaded.
    pub(crate) fn template(&self, key: &str) -> Option<&Loaded> {
        self.templates.get(key).and_then(|s| s.loaded.as_ref())
    }

    /// Whether any locale of template `name` is loaded.
    pub(crate) fn has_template(&self, name: &str) -> bool {
        self.template_names.contains(name)
    }

    /// Files that fail to load right now.
    pub(crate) fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Every loaded file's path, scripts then templates.
    pub(crate) fn loaded_files(&self) -> Vec<String> {
        self.scripts
            .values()
            .chain(self.templates.values())
            .filter_map(|s| s.loaded.as_ref().map(|l| l.source.path.clone()))
            .collect()
    }

    /// The names of the hooks that are defined.
    pub(crate) fn hooks_defined(&self) -> Vec<&'static str> {
        Hook::ALL
            .into_iter()
            .filter(|h| self.hook(*h).is_some())
            .map(Hook::name)
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Function definitions (`route`, hooks).
    Script,
    /// One expression.
    Template,
}

fn load_file(
    engine: &Engine,
    path: &Path,
    source: Source,
    previous: Option<&FileState>,
    kind: Kind,
) -> FileState {
    let kept = || previous.and_then(|p| p.loaded.clone());
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(message) => {
            return FileState {
                loaded: kept(),
                broken: Some((0, Problem::new(&source, message))),
            };
        }
    };
    let hash = {
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        h.finish()
    };
    if let Some(prev) = previous {
        if prev.loaded.as_ref().is_some_and(|l| l.hash == hash) {
            return FileState {
                loaded: prev.loaded.clone(),
                broken: None,
            };
        }
        if prev.broken.as_ref().is_some_and(|(h, _)| *h == hash) {
            return prev.clone();
        }
    }
    let compiled = match kind {
        Kind::Script => engine.compile(&text),
        Kind::Template => engine.compile_expression(&text),
    };
    match compiled {
        Ok(mut ast) => {
            ast.set_source(source.path.as_str());
            let plain = match kind {
                Kind::Template => Plain::recognise(engine, &text, &ast).map(Arc::new),
                Kind::Script => None,
            };
            FileState {
                loaded: Some(Loaded {
                    hash,
                    source: Arc::new(source),
                    ast: Arc::new(ast),
                    plain,
                }),
                broken: None,
            }
        }
        Err(e) => FileState {
            loaded: kept(),
            broken: Some((hash, Problem::parse(&source, &e))),
        },
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "is {} bytes; script files are limited to {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// The `*.rhai` files directly in `dir`, sorted by name. A missing
/// directory simply has none.
fn rhai_files(
    dir: Option<&Path>,
    label: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, std::path::PathBuf)> {
    let Some(dir) = dir else {
        return Vec::new();
    };
    let source = Source {
        label: label.to_string(),
        path: dir.display().to_string(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(Problem::new(&source, format!("cannot list: {e}")));
            return Vec::new();
        }
    };
    let mut files: Vec<(String, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // Editors' swap and backup files (`.route.rhai.swp`, `#x#`) are not scripts.
            (name.ends_with(".rhai") && !name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect();
    files.sort();
    if files.len() > MAX_FILES {
        problems.push(Problem::new(
            &source,
            format!(
                "holds {} script files; only the first {MAX_FILES} are loaded",
                files.len()
            ),
        ));
        files.truncate(MAX_FILES);
    }
    files
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `otp.rhai` → `otp`; `otp.es-MX.rhai` → `otp.es-mx`; anything else → None.
pub(crate) fn template_key(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".rhai")?;
    match stem.split_once('.') {
        None => valid_part(stem).then(|| stem.to_string()),
        Some((name, locale)) => {
            let locale = normalise_locale(locale)?;
            valid_part(name).then(|| format!("{name}.{locale}"))
        }
    }
}

/// `es_MX` / `es-mx` → `es-mx`; None when not letters, digits and `-`.
pub(crate) fn normalise_locale(locale: &str) -> Option<String> {
    if !valid_part(locale) {
        return None;
    }
    Some(locale.replace('_', "-").to_ascii_lowercase())
}

fn split_key(key: &str) -> Option<(&str, Option<&str>)> {
    match key.split_once('.') {
        None => Some((key, None)),
        Some((n, l)) => Some((n, Some(l))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_file_names_give_name_and_locale() {
        assert_eq!(template_key("otp.rhai").as_deref(), Some("otp"));
        assert_eq!(template_key("otp.es.rhai").as_deref(), Some("otp.es"));
        assert_eq!(template_key("otp.es-MX.rhai").as_deref(), Some("otp.es-mx"));
        assert_eq!(template_key("otp.es_MX.rhai").as_deref(), Some("otp.es-mx"));
        assert_eq!(template_key("otp.es.MX.rhai"), None);
        assert_eq!(template_key("bad name.rhai"), None);
        assert_eq!(template_key("README.md"), None);
    }
}
