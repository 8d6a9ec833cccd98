//! Hot reload: a debounced file watcher on the script and template
//! directories that calls [`Scripts::reload`] once changes settle.
//!
//! The reload runs on the watcher's own thread, never on a tokio worker:
//! compiling is the one slow thing scripts do, and it stays off the hot
//! path. Requests keep using the previous snapshot until the new one is
//! swapped in.

use std::sync::{Arc, Weak};
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use super::Scripts;

/// Why the watcher could not start (the gateway still runs, without reload).
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path} for script changes: {source}")]
pub struct WatchError {
    path: String,
    #[source]
    source: notify_debouncer_mini::notify::Error,
}

/// Watches while alive; dropping it stops the watcher thread.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Starts watching `scripts`' directories (those that exist). `Ok(None)`
/// when scripts are disabled or neither directory exists.
///
/// # Errors
/// The platform watcher refused (e.g. inotify watch limit reached).
pub fn watch(scripts: &Arc<Scripts>, debounce: Duration) -> Result<Option<Watcher>, WatchError> {
    let Some((scripts_dir, templates_dir)) = scripts.dirs() else {
        return Ok(None);
    };
    let dirs: Vec<_> = [scripts_dir, templates_dir]
        .into_iter()
        .filter(|d| d.is_dir())
        .map(std::path::Path::to_path_buf)
        .collect();
    if dirs.is_empty() {
        tracing::info!(
            scripts = %scripts_dir.display(),
            templates = %templates_dir.display(),
            "no script or template directory exists; nothing to watch"
        );
        return Ok(None);
    }
    let target: Weak<Scripts> = Arc::downgrade(scripts);
    let mut debouncer = new_debouncer(debounce, move |events: DebounceEventResult| {
        let Some(scripts) = target.upgrade() else {
            return;
        };
        match events {
            Ok(events) => {
                let changed: Vec<String> = events
                    .iter()
                    .filter_map(|e| e.path.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                tracing::info!(?changed, "script files changed; reloading");
                scripts.reload();
            }
            Err(e) => tracing::warn!(error = %e, "script watcher error"),
        }
    })
    .map_err(|source| WatchError {
        path: dirs[0].display().to_string(),
        source,
    })?;
    for dir in &dirs {
        debouncer
            .watcher()
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                path: dir.display().to_string(),
                source,
            })?;
        tracing::info!(dir = %dir.display(), "watching for script changes");
    }
    Ok(Some(Watcher {
        _debouncer: debouncer,
    }))
}
