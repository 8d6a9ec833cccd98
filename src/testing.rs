//! Waiting on conditions in tests: the one copy the unit tests, the
//! integration tests and the SMSC simulator's tests share.
//!
//! Tests wait for what they expect to see instead of sleeping a fixed time
//! and hoping it happened: a fixed sleep is either too short on a loaded
//! machine (a flaky failure) or longer than needed everywhere else. Each
//! wait is bounded and fails naming what it waited for.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] and [`eventually_async`] look again.
const POLL: Duration = Duration::from_millis(10);

/// Awaits `future` for at most `limit`; panics naming `what` otherwise.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Polls `condition` until it holds, for at most `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    within(limit, what, async {
        while !condition() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}

/// Polls the asynchronous `check` until it answers `true`, for at most
/// `limit` (for conditions read over HTTP or from a store).
pub async fn eventually_async(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    within(limit, what, async {
        while !check().await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}

/// Polls the asynchronous `probe` until it yields a value, for at most
/// `limit`, and returns that value.
pub async fn eventually_some<T>(
    limit: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    within(limit, what, async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_once_the_condition_holds() {
        let started = tokio::time::Instant::now();
        let mut polls = 0;
        eventually(Duration::from_secs(5), "third poll", || {
            polls += 1;
            polls == 3
        })
        .await;
        assert_eq!(polls, 3);
        assert_eq!(started.elapsed(), POLL * 2);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s: never")]
    async fn eventually_fails_naming_what_it_waited_for() {
        eventually(Duration::from_secs(1), "never", || false).await;
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_some_hands_back_the_value() {
        let mut n = 0;
        let got = eventually_some(Duration::from_secs(1), "a value", async || {
            n += 1;
            (n == 2).then_some(n)
        })
        .await;
        assert_eq!(got, 2);
    }
}
