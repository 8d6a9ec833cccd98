//! Per-recipient limits of each class, and the one algorithm that
//! enforces them.
//!
//! A recipient's history is the list of its recent send times (a sliding
//! log, at most as many entries as the largest count limit). A request is
//! allowed when every rule allows it; the answer when refused is exactly when
//! it would be allowed (`Retry-After`). The embedded store runs
//! [`LimitPolicy::check`] inside its write transaction; the Redis store runs
//! the same steps in one Lua script. Both give identical answers, which the
//! conformance suite checks.

use serde::{Deserialize, Serialize};

use crate::model::{Class, Micros};

const HOUR: Micros = 3_600_000_000;
const DAY: Micros = 24 * HOUR;
const SECOND: Micros = 1_000_000;

/// The limits of one class (`[limits.<class>]`); 0 turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitPolicy {
    pub per_hour: u32,
    pub per_day: u32,
    pub min_interval_seconds: u32,
}

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitDecision {
    /// Allowed; the history to store (with this send appended).
    Allowed(Vec<Micros>),
    /// Refused; allowed again after this many microseconds.
    Refused { retry_after: Micros },
}

impl LimitPolicy {
    /// The defaults: otp 5/hour and one per 30 s, transactional
    /// 30/hour, marketing 2/day, emergency unlimited.
    pub fn default_for(class: Class) -> LimitPolicy {
        match class {
            Class::Emergency => LimitPolicy::default(),
            Class::Otp => LimitPolicy {
                per_hour: 5,
                per_day: 0,
                min_interval_seconds: 30,
            },
            Class::Transactional => LimitPolicy {
                per_hour: 30,
                ..LimitPolicy::default()
            },
            Class::Marketing => LimitPolicy {
                per_day: 2,
                ..LimitPolicy::default()
            },
        }
    }

    /// Whether any rule is on.
    pub fn is_active(&self) -> bool {
        self.per_hour > 0 || self.per_day > 0 || self.min_interval_seconds > 0
    }

    /// How long history must be kept.
    pub fn horizon(&self) -> Micros {
        if self.per_day > 0 {
            DAY
        } else if self.per_hour > 0 {
            HOUR
        } else {
            Micros::from(self.min_interval_seconds) * SECOND
        }
    }

    /// Most history entries any rule looks at.
    pub fn keep(&self) -> usize {
        (self.per_hour.max(self.per_day).max(1)) as usize
    }

    /// Checks one send at `now` against `history` (ascending send times).
    pub fn check(&self, history: &[Micros], now: Micros) -> LimitDecision {
        let live: Vec<Micros> = history
            .iter()
            .copied()
            .filter(|t| *t > now - self.horizon())
            .collect();
        let mut wait: Micros = 0;
        if self.min_interval_seconds > 0
            && let Some(last) = live.last()
        {
            wait = wait.max(last + Micros::from(self.min_interval_seconds) * SECOND - now);
        }
        for (limit, window) in [(self.per_hour, HOUR), (self.per_day, DAY)] {
            if limit == 0 {
                continue;
            }
            let recent: Vec<Micros> = live.iter().copied().filter(|t| *t > now - window).collect();
            let limit = limit as usize;
            if recent.len() >= limit {
                // The send that must age out before another is allowed.
                let oldest_counted = recent[recent.len() - limit];
                wait = wait.max(oldest_counted + window - now);
            }
        }
        if wait > 0 {
            return LimitDecision::Refused { retry_after: wait };
        }
        let mut next = live;
        next.push(now);
        let keep = self.keep();
        if next.len() > keep {
            next.drain(..next.len() - keep);
        }
        LimitDecision::Allowed(next)
    }
}

/// `Retry-After` seconds for a wait in microseconds (rounded up, at least 1).
pub fn retry_after_seconds(wait: Micros) -> u64 {
    u64::try_from((wait + SECOND - 1) / SECOND)
        .unwrap_or(1)
        .max(1)
}

/// Encodes a history for storage: little-endian i64s.
pub fn encode_history(history: &[Micros]) -> Vec<u8> {
    history.iter().flat_map(|t| t.to_le_bytes()).collect()
}

/// Decodes a stored history; ignores a trailing partial entry.
pub fn decode_history(bytes: &[u8]) -> Vec<Micros> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Micros::from_le_bytes(b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otp() -> LimitPolicy {
        LimitPolicy::default_for(Class::Otp)
    }

    fn run(p: &LimitPolicy, times: &[Micros]) -> Vec<Option<Micros>> {
        let mut history = Vec::new();
        times
            .iter()
            .map(|&now| match p.check(&history, now) {
                LimitDecision::Allowed(h) => {
                    history = h;
                    None
                }
                LimitDecision::Refused { retry_after } => Some(retry_after),
            })
            .collect()
    }

    #[test]
    fn otp_allows_one_per_30_seconds() {
        let r = run(&otp(), &[0, 10 * SECOND, 30 * SECOND]);
        assert_eq!(r, vec![None, Some(20 * SECOND), None]);
    }

    #[test]
    fn otp_allows_five_per_hour_then_says_when() {
        let times: Vec<Micros> = (0..6).map(|i| i * 60 * SECOND).collect();
        let r = run(&otp(), &times);
        assert_eq!(&r[..5], &[None, None, None, None, None]);
        // The first send ages out an hour after it happened.
        assert_eq!(r[5], Some(HOUR - 5 * 60 * SECOND));
        let mut later = times.clone();
        later.truncate(5);
        later.push(HOUR + 1);
        assert_eq!(run(&otp(), &later)[5], None);
    }

    #[test]
    fn marketing_allows_two_per_day() {
        let p = LimitPolicy::default_for(Class::Marketing);
        let r = run(&p, &[0, HOUR, 2 * HOUR, DAY + 1]);
        assert_eq!(r, vec![None, None, Some(DAY - 2 * HOUR), None]);
    }

    #[test]
    fn emergency_is_never_limited() {
        let p = LimitPolicy::default_for(Class::Emergency);
        assert!(!p.is_active());
    }

    #[test]
    fn refusals_do_not_consume_the_limit() {
        let p = LimitPolicy::default_for(Class::Marketing);
        let r = run(&p, &[0, 1, 2, 3, DAY + 1, DAY + 2]);
        assert_eq!(r[4], None);
        assert_eq!(r[5], None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(1), 1);
        assert_eq!(retry_after_seconds(SECOND), 1);
        assert_eq!(retry_after_seconds(SECOND + 1), 2);
    }

    #[test]
    fn histories_round_trip() {
        let h = vec![1, -2, i64::MAX];
        assert_eq!(decode_history(&encode_history(&h)), h);
    }
}
