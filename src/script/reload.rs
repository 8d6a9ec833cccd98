//! Hot reload: a debounced file watcher on the script and template
//! directories, plus a periodic rescan, that call [`Scripts::reload`] once
//! changes settle.
//!
//! Watching only the directories breaks the moment they are replaced
//! (`mv new scripts`, a symlink swap, a directory created after start): the
//! kernel watch follows the old inode, or there was nothing to watch. So the
//! reload thread
//! - also watches each directory's parent (events there are filtered to the
//!   directory's own name, so a busy parent such as the data directory costs
//!   nothing), and re-arms the directory watch whenever the directory behind
//!   the path changes (another inode) or appears;
//! - rescans every [`RESCAN_EVERY`] as a fallback: a fingerprint of the
//!   directories and their `.rhai` files (inode, size, times), reloading when
//!   it changed. This covers what no watch can see (network file systems,
//!   a parent that did not exist, watch limits reached).
//!
//! Reloads run on that thread, never on a tokio worker: compiling is the one
//! slow thing scripts do, and it stays off the hot path. Requests keep using
//! the previous snapshot until the new one is swapped in.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use super::Scripts;

/// How often the directories are rescanned when no event came.
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Why the watcher could not start (the gateway still runs, without reload).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path} for script changes: {source}")]
    Watch {
        path: String,
        #[source]
        source: notify_debouncer_mini::notify::Error,
    },
    #[error("cannot start the script reload thread: {0}")]
    Thread(std::io::Error),
}

/// What wakes the reload thread.
enum Wake {
    Changed,
    WatchFailed(String),
    Stop,
}

/// Watches while alive; dropping it stops the reload thread.
pub struct Watcher {
    wake: mpsc::Sender<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts watching `scripts`' directories, whether or not they exist yet.
/// `Ok(None)` when scripts are disabled.
///
/// # Errors
/// The platform watcher or the thread could not be created. A directory that
/// cannot be watched is only logged: the rescan still covers it.
pub fn watch(scripts: &Arc<Scripts>, debounce: Duration) -> Result<Option<Watcher>, WatchError> {
    watch_every(scripts, debounce, RESCAN_EVERY)
}

/// [`watch`] with the rescan period given.
///
/// # Errors
/// As [`watch`].
pub fn watch_every(
    scripts: &Arc<Scripts>,
    debounce: Duration,
    rescan: Duration,
) -> Result<Option<Watcher>, WatchError> {
    let Some((scripts_dir, templates_dir)) = scripts.dirs() else {
        return Ok(None);
    };
    // Absolute, so paths in events compare with them whatever the cwd.
    let dirs: Vec<PathBuf> = [scripts_dir, templates_dir]
        .into_iter()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()))
        .collect();
    let (wake, woken) = mpsc::channel();
    let events = wake.clone();
    let relevant_to = dirs.clone();
    let mut debouncer = new_debouncer(debounce, move |result: DebounceEventResult| {
        let wake = match result {
            Ok(evs) if evs.iter().any(|e| relevant(&relevant_to, &e.path)) => Wake::Changed,
            Ok(_) => return,
            Err(e) => Wake::WatchFailed(e.to_string()),
        };
        let _ = events.send(wake);
    })
    .map_err(|source| WatchError::Watch {
        path: dirs[0].display().to_string(),
        source,
    })?;
    let mut armed = Armed::new(dirs.clone());
    armed.rearm(&mut debouncer);
    let target: Weak<Scripts> = Arc::downgrade(scripts);
    let thread = std::thread::Builder::new()
        .name("herald-script-reload".into())
        .spawn(move || run(debouncer, armed, &woken, &target, rescan))
        .map_err(WatchError::Thread)?;
    Ok(Some(Watcher {
        wake,
        thread: Some(thread),
    }))
}

/// Whether an event at `path` concerns one of `dirs`: the directory entry
/// itself (created, removed, renamed, replaced) or something inside it.
fn relevant(dirs: &[PathBuf], path: &Path) -> bool {
    dirs.iter().any(|d| path.starts_with(d))
}

fn run(
    mut debouncer: Debouncer<RecommendedWatcher>,
    mut armed: Armed,
    woken: &mpsc::Receiver<Wake>,
    target: &Weak<Scripts>,
    rescan: Duration,
) {
    let mut last = fingerprint(&armed.dirs);
    loop {
        let wake = woken.recv_timeout(rescan);
        let Some(scripts) = target.upgrade() else {
            return;
        };
        match wake {
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Wake::Changed) => {
                armed.rearm(&mut debouncer);
                last = fingerprint(&armed.dirs);
                tracing::info!("script files changed; reloading");
                scripts.reload();
            }
            Ok(Wake::WatchFailed(e)) => {
                tracing::warn!(error = %e, "script watcher error; the rescan covers it");
                armed.rearm(&mut debouncer);
            }
            Err(RecvTimeoutError::Timeout) => {
                armed.rearm(&mut debouncer);
                let now = fingerprint(&armed.dirs);
                if now != last {
                    last = now;
                    tracing::info!("script files changed (found by rescan); reloading");
                    scripts.reload();
                }
            }
        }
    }
}

/// Identity of a directory: the inode behind the path (symlinks followed).
type DirId = (u64, u64);

fn dir_id(dir: &Path) -> Option<DirId> {
    std::fs::metadata(dir)
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|m| (m.dev(), m.ino()))
}

/// Which watches are in place.
struct Armed {
    dirs: Vec<PathBuf>,
    /// Per directory, the inode its watch follows.
    watching: Vec<Option<DirId>>,
    parents: Vec<(PathBuf, bool)>,
}

impl Armed {
    fn new(dirs: Vec<PathBuf>) -> Self {
        let mut parents: Vec<(PathBuf, bool)> = Vec::new();
        for d in &dirs {
            if let Some(p) = d.parent()
                && !parents.iter().any(|(q, _)| q == p)
            {
                parents.push((p.to_path_buf(), false));
            }
        }
        Armed {
            watching: vec![None; dirs.len()],
            dirs,
            parents,
        }
    }

    /// Watches parents not yet watched, and each directory whose inode
    /// changed since its watch was set (or that appeared).
    fn rearm(&mut self, debouncer: &mut Debouncer<RecommendedWatcher>) {
        let watcher = debouncer.watcher();
        for (parent, watched) in &mut self.parents {
            if !*watched && parent.is_dir() {
                match watcher.watch(parent, RecursiveMode::NonRecursive) {
                    Ok(()) => *watched = true,
                    Err(e) => {
                        tracing::warn!(dir = %parent.display(), error = %e, "cannot watch; relying on the rescan");
                    }
                }
            }
        }
        for (dir, watching) in self.dirs.iter().zip(self.watching.iter_mut()) {
            let now = dir_id(dir);
            if now == *watching {
                continue;
            }
            if watching.is_some() {
                let _ = watcher.unwatch(dir);
            }
            *watching = None;
            if now.is_some() {
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        *watching = now;
                        tracing::info!(dir = %dir.display(), "watching for script changes");
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; relying on the rescan");
                    }
                }
            }
        }
    }
}

/// What a reload would read, cheaply: each directory's inode and each
/// `.rhai` file's inode, size and times.
fn fingerprint(dirs: &[PathBuf]) -> Vec<(PathBuf, u64, u64, i64, i64, i64, i64)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Some((dev, ino)) = dir_id(dir) else {
            continue;
        };
        out.push((dir.clone(), dev, ino, 0, 0, 0, 0));
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "rhai") {
                continue;
            }
            if let Ok(m) = std::fs::metadata(&path) {
                let size = i64::try_from(m.size()).unwrap_or(i64::MAX);
                out.push((
                    path,
                    m.dev(),
                    m.ino(),
                    size,
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime_nsec(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_for_the_directories_and_their_files_only() {
        let dirs = vec![
            PathBuf::from("/srv/h/scripts"),
            PathBuf::from("/srv/h/templates"),
        ];
        assert!(relevant(&dirs, Path::new("/srv/h/scripts")));
        assert!(relevant(&dirs, Path::new("/srv/h/scripts/route.rhai")));
        assert!(relevant(&dirs, Path::new("/srv/h/templates/otp.rhai")));
        assert!(!relevant(&dirs, Path::new("/srv/h/herald.db")));
        assert!(!relevant(&dirs, Path::new("/srv/h/scripts.new")));
        assert!(!relevant(&dirs, Path::new("/srv/h/scripts.new/route.rhai")));
    }

    #[test]
    fn the_fingerprint_sees_edits_and_replaced_directories() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("scripts");
        std::fs::create_dir(&dir).expect("dir");
        let dirs = vec![dir.clone()];
        std::fs::write(dir.join("route.rhai"), "1").expect("write");
        std::fs::write(dir.join("notes.txt"), "x").expect("write");
        let a = fingerprint(&dirs);
        assert_eq!(a.len(), 2, "the directory and its one .rhai file");
        std::fs::write(dir.join("notes.txt"), "changed").expect("write");
        assert_eq!(fingerprint(&dirs), a, "other files do not count");
        std::fs::write(dir.join("route.rhai"), "22").expect("write");
        let b = fingerprint(&dirs);
        assert_ne!(b, a);
        let new = root.path().join("scripts.new");
        std::fs::create_dir(&new).expect("dir");
        std::fs::write(new.join("route.rhai"), "22").expect("write");
        std::fs::rename(&dir, root.path().join("scripts.old")).expect("mv");
        std::fs::rename(&new, &dir).expect("mv");
        assert_ne!(fingerprint(&dirs), b, "a replaced directory is a change");
        std::fs::remove_dir_all(&dir).expect("rm");
        assert!(fingerprint(&dirs).is_empty());
    }
}
