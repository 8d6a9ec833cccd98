//! The server-wide `submit_sm` rate limit, changeable while sessions run.
//!
//! `governor` quotas are fixed per limiter, so a rate change installs a new limiter and
//! bumps a generation number. Sessions keep a [`ThrottleView`] and only take the lock
//! when the generation moved; the hot path is one atomic load plus governor's own check.

use std::{
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// See the module docs.
#[derive(Debug)]
pub(super) struct Throttle {
    generation: AtomicU64,
    current: Mutex<(u32, Option<Arc<DefaultDirectRateLimiter>>)>,
}

/// A session's cached copy of the current limiter.
#[derive(Debug, Default)]
pub(super) struct ThrottleView {
    generation: u64,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

fn limiter(tps: u32) -> Option<Arc<DefaultDirectRateLimiter>> {
    // A burst of one second's worth: "N per second", not "one every 1/N s".
    NonZeroU32::new(tps).map(|tps| Arc::new(RateLimiter::direct(Quota::per_second(tps))))
}

impl Throttle {
    pub(super) fn new(tps: u32) -> Self {
        Self {
            // Views start at generation 0, so the first check always loads the limiter.
            generation: AtomicU64::new(1),
            current: Mutex::new((tps, limiter(tps))),
        }
    }

    /// Installs a new rate; 0 turns throttling off.
    pub(super) fn set(&self, tps: u32) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *current = (tps, limiter(tps));
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(super) fn tps(&self) -> u32 {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Takes one unit of the rate; `false` means the submit must be throttled.
    pub(super) fn allow(&self, view: &mut ThrottleView) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != view.generation {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            view.limiter = current.1.clone();
            view.generation = generation;
        }
        view.limiter
            .as_ref()
            .is_none_or(|limiter| limiter.check().is_ok())
    }
}
