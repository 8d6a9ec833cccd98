//! Hot reload: a file watcher on the script and template directories, plus
//! a periodic rescan, that call [`Scripts::reload`] once changes settle and
//! only when the content of a script or template changed.
//!
//! What counts as a change is decided twice:
//! - by the event: opening, reading and closing a file unwritten changes
//!   nothing, and the reload thread causes exactly those itself (loading the
//!   scripts, hashing them, listing the directories). Counting them would make
//!   every reload set off the next, forever. Only writes, creations, removals,
//!   renames and attribute changes wake the thread;
//! - by the content: a fingerprint holds each directory's identity and a hash
//!   of each `.rhai` file's content. A wake-up whose fingerprint equals the
//!   last one (a `touch`, an editor saving unchanged text, a backup file
//!   written next to the scripts) reloads nothing.
//!
//! Watching only the directories breaks the moment they are replaced
//! (`mv new scripts`, a symlink swap, a directory created after start): the
//! kernel watch follows the old inode, or there was nothing to watch. So the
//! reload thread
//! - also watches each directory's parent (events there are filtered to the
//!   directory's own name, so a busy parent such as the data directory costs
//!   nothing), and re-arms the directory watch whenever the directory behind
//!   the path changes (another inode) or appears;
//! - rescans every [`RESCAN_EVERY`] as a fallback, reloading when the
//!   fingerprint changed. This covers what no watch can see (network file
//!   systems, a parent that did not exist, watch limits reached).
//!
//! Reloads run on that thread, never on a tokio worker: compiling is the one
//! slow thing scripts do, and it stays off the hot path. Requests keep using
//! the previous snapshot until the new one is swapped in.

use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify_debouncer_mini::notify::event::{AccessKind, AccessMode};
use notify_debouncer_mini::notify::{
    self, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _,
};

use super::Scripts;

/// How often the directories are rescanned when no event came.
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Longest a stream of events can put a reload off, in debounce periods.
const SETTLE_MAX: u32 = 10;

/// Why the watcher could not start (the gateway still runs, without reload).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path} for script changes: {source}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
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
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let wake = match result {
            Ok(e) if may_change(e.kind) && e.paths.iter().any(|p| relevant(&relevant_to, p)) => {
                Wake::Changed
            }
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
    armed.rearm(&mut watcher);
    let target: Weak<Scripts> = Arc::downgrade(scripts);
    let thread = std::thread::Builder::new()
        .name("herald-script-reload".into())
        .spawn(move || {
            run(
                &mut watcher,
                armed,
                &woken,
                &target,
                Periods { debounce, rescan },
            );
        })
        .map_err(WatchError::Thread)?;
    Ok(Some(Watcher {
        wake,
        thread: Some(thread),
    }))
}

/// Whether an event of this kind can mean changed content. Accesses cannot,
/// except closing a file that was open for writing (the end of a save).
fn may_change(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether an event at `path` concerns one of `dirs`: the directory entry
/// itself (created, removed, renamed, replaced) or something inside it.
fn relevant(dirs: &[PathBuf], path: &Path) -> bool {
    dirs.iter().any(|d| path.starts_with(d))
}

/// The reload thread's timing.
#[derive(Debug, Clone, Copy)]
struct Periods {
    /// Quiet time after the last event before a reload.
    debounce: Duration,
    /// Fallback rescan when no event came.
    rescan: Duration,
}

fn run(
    watcher: &mut RecommendedWatcher,
    mut armed: Armed,
    woken: &mpsc::Receiver<Wake>,
    target: &Weak<Scripts>,
    periods: Periods,
) {
    let mut last = fingerprint(&armed.dirs);
    loop {
        let wake = woken.recv_timeout(periods.rescan);
        let found_by = match wake {
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Wake::Changed) => {
                if !settle(woken, periods.debounce) {
                    return;
                }
                "watcher"
            }
            Ok(Wake::WatchFailed(e)) => {
                tracing::warn!(error = %e, "script watcher error; the rescan covers it");
                armed.rearm(watcher);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => "rescan",
        };
        let Some(scripts) = target.upgrade() else {
            return;
        };
        armed.rearm(watcher);
        let now = fingerprint(&armed.dirs);
        if now == last {
            tracing::trace!(found_by, "script directories touched, content unchanged");
            continue;
        }
        last = now;
        tracing::info!(found_by, "script files changed; reloading");
        scripts.reload();
    }
}

/// Waits until no event came for `debounce` (an editor's save or a deploy is
/// a burst of events), at most [`SETTLE_MAX`] periods. False on stop.
fn settle(woken: &mpsc::Receiver<Wake>, debounce: Duration) -> bool {
    let deadline = Instant::now() + debounce.saturating_mul(SETTLE_MAX);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match woken.recv_timeout(debounce.min(left)) {
            Ok(Wake::Changed | Wake::WatchFailed(_)) => {}
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
            Err(RecvTimeoutError::Timeout) => return true,
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
    fn rearm(&mut self, watcher: &mut RecommendedWatcher) {
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

/// What a reload depends on: each directory's identity (the inode behind
/// its path) and a hash of the content of each script or template in it,
/// sorted. Equal fingerprints mean a reload would load the same thing.
fn fingerprint(dirs: &[PathBuf]) -> Vec<(PathBuf, Entry)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Some(id) = dir_id(dir) else {
            continue;
        };
        out.push((dir.clone(), Entry::Dir(id)));
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // The files the library loads.
            if !name.ends_with(".rhai") || name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let entry = match std::fs::read(&path) {
                Ok(bytes) => {
                    let mut hasher = DefaultHasher::new();
                    hasher.write(&bytes);
                    Entry::File(hasher.finish())
                }
                Err(e) => Entry::Unreadable(e.kind()),
            };
            out.push((path, entry));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One line of a [`fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir(DirId),
    /// A hash of the file's content.
    File(u64),
    Unreadable(std::io::ErrorKind),
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

    #[test]
    fn the_fingerprint_is_the_content_not_the_times() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = vec![root.path().to_path_buf()];
        let file = root.path().join("route.rhai");
        std::fs::write(&file, "fn route(msg) { () }").expect("write");
        let a = fingerprint(&dirs);
        // Same text written again: new mtime and ctime, same content.
        std::fs::write(&file, "fn route(msg) { () }").expect("write");
        let _ = std::fs::read(&file).expect("read");
        assert_eq!(fingerprint(&dirs), a);
        std::fs::write(&file, "fn route(msg) { \"uk\" }").expect("write");
        assert_ne!(fingerprint(&dirs), a);
    }

    #[test]
    fn reading_a_file_is_not_a_change_but_finishing_a_write_is() {
        use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Execute)),
        ] {
            assert!(!may_change(quiet), "{quiet:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(may_change(change), "{change:?}");
        }
    }
}
