//! Reconnect delays: exponential from `reconnect_min` to `reconnect_max`,
//! each drawn uniformly from the upper half of its step ("equal jitter"), so
//! the binds of many gateways that lost one SMSC do not come back in lockstep.

use std::time::Duration;

/// The delay schedule of one bind.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        // Any seed will do; it only spreads binds apart.
        let seed = getrandom::u64().unwrap_or_else(|_| {
            u64::try_from(crate::model::now_micros()).unwrap_or(0x9E37_79B9_7F4A_7C15)
        });
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            rng: seed | 1,
        }
    }

    /// The wait before the next attempt; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .min
            .saturating_mul(2u32.saturating_pow(self.failures.min(30)))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        step.mul_f64(0.5 + 0.5 * self.unit())
    }

    /// Attempts that failed since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over from `min` (after a bind that stayed up).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// xorshift64*: a uniform value in [0, 1).
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        #[allow(clippy::cast_precision_loss)]
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_stop_at_the_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        for _ in 0..3 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn two_schedules_do_not_move_in_lockstep() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let same = (0..8).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 8);
    }
}
