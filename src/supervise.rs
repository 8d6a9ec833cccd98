//! Supervision of the gateway's long-running tasks (dispatchers, recorders,
//! the webhook worker, maintenance): a task that panics is never a silent
//! stop. Each panic is logged with its message, counted in
//! `herald_task_panics_total{task}`, and shown by `/readyz` while the task
//! is down; then the task is restarted or, where that is not safe, the
//! gateway stops and `herald serve` exits non-zero.
//!
//! Which one depends on what the task holds in memory:
//! - [`Supervisor::restarting`]: tasks whose work lives in the store
//!   (webhook deliveries, maintenance) start again after a backoff; one that
//!   keeps panicking ([`MAX_QUICK_PANICS`] times without a healthy run) is
//!   given up like a stopping task.
//! - [`Supervisor::stopping`]: a dispatcher holds claimed messages and its
//!   window, a recorder the channel its outcomes or receipts arrive on; a
//!   new copy in this process could not take those over, so the gateway
//!   stops instead. Everything committed stays; claimed messages are queued
//!   again by the restart (the documented crash path, at-least-once), which
//!   is what the process manager does next.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Panics in a row, each after less than [`HEALTHY_RUN`], after which a
/// restarting task is given up.
pub const MAX_QUICK_PANICS: u32 = 5;
/// A task that ran this long before panicking starts its count afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Longest wait before a restart.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// What a supervised task is doing, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    Running,
    /// Panicked; starts again after a backoff.
    Restarting {
        panics: u64,
        message: String,
    },
    /// Panicked and will not run again: the gateway stops.
    Dead {
        message: String,
    },
    /// Returned (the gateway is stopping).
    Finished,
}

/// A supervised task panicked and could not be restarted: the gateway
/// stopped because of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task `{task}` panicked: {message}")]
pub struct TaskFailure {
    pub task: String,
    pub message: String,
}

/// Runs tasks under supervision and knows how each is doing. Cheap to
/// clone: clones share the same tasks.
#[derive(Clone)]
pub struct Supervisor {
    metrics: Arc<Metrics>,
    /// Cancelled when the gateway stops: no restarts after it.
    stop: CancellationToken,
    /// Cancelled when a task is dead (see [`Supervisor::failed`]).
    fatal: CancellationToken,
    tasks: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
    failure: Arc<Mutex<Option<TaskFailure>>>,
    restart_delay: Duration,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("tasks", &*lock(&self.tasks))
            .finish_non_exhaustive()
    }
}

/// The maps stay consistent whatever panicked while holding them (each
/// update is one insert), so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    /// A supervisor whose tasks are not restarted once `stop` is cancelled.
    pub fn new(metrics: Arc<Metrics>, stop: CancellationToken) -> Supervisor {
        Supervisor {
            metrics,
            stop,
            fatal: CancellationToken::new(),
            tasks: Arc::default(),
            failure: Arc::default(),
            restart_delay: Duration::from_secs(1),
        }
    }

    /// The first restart waits `delay` (1 s by default), each further one
    /// twice as long, up to 30 s.
    #[must_use]
    pub fn with_restart_delay(mut self, delay: Duration) -> Supervisor {
        self.restart_delay = delay;
        self
    }

    /// Every supervised task and its status, by name.
    pub fn tasks(&self) -> BTreeMap<String, TaskStatus> {
        lock(&self.tasks).clone()
    }

    /// What `/readyz` reports: each task that is down, and why.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.tasks)
            .iter()
            .filter_map(|(name, status)| match status {
                TaskStatus::Running | TaskStatus::Finished => None,
                TaskStatus::Restarting { panics, message } => Some(format!(
                    "task `{name}` panicked ({panics} so far: {message}); restarting"
                )),
                TaskStatus::Dead { message } => Some(format!(
                    "task `{name}` panicked ({message}) and is not restarted; the gateway is stopping"
                )),
            })
            .collect()
    }

    /// The task whose panic stopped the gateway, if one did.
    pub fn failure(&self) -> Option<TaskFailure> {
        lock(&self.failure).clone()
    }

    /// Resolves once a task is dead: the gateway should stop.
    pub async fn failed(&self) {
        self.fatal.cancelled().await;
    }

    /// Supervises `task`, which cannot be restarted: if it panics, the
    /// gateway stops. The returned future runs it; spawn it where the task
    /// belongs (a tracker the shutdown waits for, or its own task).
    pub fn stopping<N, F>(&self, name: N, task: F) -> impl Future<Output = ()> + use<N, F>
    where
        N: Into<String>,
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let me = self.clone();
        me.set(&name, TaskStatus::Running);
        async move {
            match tokio::spawn(task).await {
                Ok(()) => me.set(&name, TaskStatus::Finished),
                Err(e) => {
                    let message = panic_message(e);
                    me.panicked(&name, &message);
                    me.give_up(&name, message);
                }
            }
        }
    }

    /// Supervises the task `make` starts, starting it again (after a
    /// backoff) each time it panics, until the gateway stops or it has
    /// panicked [`MAX_QUICK_PANICS`] times in a row without a healthy run;
    /// then it is given up and the gateway stops.
    pub fn restarting<N, M, F>(
        &self,
        name: N,
        mut make: M,
    ) -> impl Future<Output = ()> + use<N, M, F>
    where
        N: Into<String>,
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let me = self.clone();
        me.set(&name, TaskStatus::Running);
        async move {
            let mut panics: u64 = 0;
            let mut quick: u32 = 0;
            loop {
                let started = Instant::now();
                let Err(e) = tokio::spawn(make()).await else {
                    me.set(&name, TaskStatus::Finished);
                    return;
                };
                let message = panic_message(e);
                me.panicked(&name, &message);
                panics += 1;
                quick = if started.elapsed() >= HEALTHY_RUN {
                    1
                } else {
                    quick + 1
                };
                if quick >= MAX_QUICK_PANICS {
                    me.give_up(&name, message);
                    return;
                }
                let delay = me
                    .restart_delay
                    .saturating_mul(1 << (quick - 1).min(16))
                    .min(MAX_RESTART_DELAY);
                me.set(&name, TaskStatus::Restarting { panics, message });
                tokio::select! {
                    () = me.stop.cancelled() => {
                        me.set(&name, TaskStatus::Finished);
                        return;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
                tracing::warn!(task = %name, panics, "restarting task after a panic");
                me.set(&name, TaskStatus::Running);
            }
        }
    }

    fn set(&self, name: &str, status: TaskStatus) {
        lock(&self.tasks).insert(name.to_string(), status);
    }

    fn panicked(&self, name: &str, message: &str) {
        tracing::error!(task = %name, panic = %message, "task panicked");
        self.metrics.task_panic(name);
    }

    fn give_up(&self, name: &str, message: String) {
        tracing::error!(task = %name, "task cannot continue; stopping the gateway");
        self.set(
            name,
            TaskStatus::Dead {
                message: message.clone(),
            },
        );
        lock(&self.failure).get_or_insert(TaskFailure {
            task: name.to_string(),
            message,
        });
        self.fatal.cancel();
    }
}

/// The text a panic was raised with (`panic!("…")`), or what ended the task.
fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".into();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::testing::within;

    fn supervisor() -> (Supervisor, Arc<Metrics>, CancellationToken) {
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let s = Supervisor::new(metrics.clone(), stop.clone())
            .with_restart_delay(Duration::from_millis(20));
        (s, metrics, stop)
    }

    fn panics_counted(metrics: &Metrics, task: &str) -> bool {
        let text = metrics.render(Default::default(), 0);
        text.contains(&format!("herald_task_panics_total{{task=\"{task}\"}} 1"))
    }

    #[tokio::test]
    async fn a_panicking_task_is_logged_counted_and_restarted() {
        let (s, metrics, stop) = supervisor();
        let runs = Arc::new(AtomicU32::new(0));
        let task = s.restarting("worker", {
            let runs = runs.clone();
            let stop = stop.clone();
            move || {
                let runs = runs.clone();
                let stop = stop.clone();
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("boom");
                    }
                    stop.cancelled().await;
                }
            }
        });
        let handle = tokio::spawn(task);
        crate::testing::eventually(Duration::from_secs(5), "restarted", || {
            runs.load(Ordering::SeqCst) == 2
        })
        .await;
        assert!(panics_counted(&metrics, "worker"));
        assert_eq!(s.tasks()["worker"], TaskStatus::Running);
        assert!(s.problems().is_empty());
        assert!(s.failure().is_none());
        stop.cancel();
        within(Duration::from_secs(5), "finished", handle)
            .await
            .expect("joined");
        assert_eq!(s.tasks()["worker"], TaskStatus::Finished);
    }

    #[tokio::test]
    async fn while_down_a_task_is_a_problem() {
        let (s, _metrics, _stop) = supervisor();
        let s = s.with_restart_delay(Duration::from_secs(3600));
        tokio::spawn(s.restarting("maintenance", || async { panic!("disk on fire") }));
        crate::testing::eventually(Duration::from_secs(5), "reported", || {
            !s.problems().is_empty()
        })
        .await;
        let problems = s.problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("`maintenance`") && problems[0].contains("disk on fire"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn a_task_that_keeps_panicking_is_given_up_and_stops_the_gateway() {
        let (s, metrics, _stop) = supervisor();
        let runs = Arc::new(AtomicU32::new(0));
        let handle = tokio::spawn(s.restarting("webhooks", {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                async { panic!("again") }
            }
        }));
        within(Duration::from_secs(10), "given up", s.failed()).await;
        within(Duration::from_secs(5), "finished", handle)
            .await
            .expect("joined");
        assert_eq!(runs.load(Ordering::SeqCst), MAX_QUICK_PANICS);
        let text = metrics.render(Default::default(), 0);
        assert!(
            text.contains(&format!(
                "herald_task_panics_total{{task=\"webhooks\"}} {MAX_QUICK_PANICS}"
            )),
            "{text}"
        );
        assert!(matches!(s.tasks()["webhooks"], TaskStatus::Dead { .. }));
        assert_eq!(
            s.failure(),
            Some(TaskFailure {
                task: "webhooks".into(),
                message: "again".into()
            })
        );
    }

    #[tokio::test]
    async fn a_task_that_cannot_restart_stops_the_gateway_at_its_first_panic() {
        let (s, metrics, _stop) = supervisor();
        let handle = tokio::spawn(s.stopping("dispatcher/sim", async {
            panic!("claimed messages lost track of")
        }));
        within(Duration::from_secs(5), "failed", s.failed()).await;
        handle.await.expect("joined");
        assert!(panics_counted(&metrics, "dispatcher/sim"));
        let problems = s.problems();
        assert!(problems[0].contains("`dispatcher/sim`"), "{problems:?}");
        assert_eq!(
            s.failure().map(|f| f.to_string()).as_deref(),
            Some("task `dispatcher/sim` panicked: claimed messages lost track of")
        );
    }

    #[tokio::test]
    async fn tasks_that_return_are_finished_not_failed() {
        let (s, _metrics, _stop) = supervisor();
        s.stopping("recorder", async {}).await;
        s.restarting("maintenance", || async {}).await;
        assert_eq!(s.tasks()["recorder"], TaskStatus::Finished);
        assert_eq!(s.tasks()["maintenance"], TaskStatus::Finished);
        assert!(s.problems().is_empty() && s.failure().is_none());
    }
}
