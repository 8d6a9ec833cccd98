//! Functions Herald lends to scripts, and the environment they read
//! (connectors, their health, the clock). Everything here is pure or reads
//! in-memory state: no I/O, no blocking.
//!
//! | function | returns |
//! |---|---|
//! | `reject(reason)` | stops the hook: the request is refused with 422 `rejected_by_route` |
//! | `country_code(number)` | ITU calling code (`44` for `+447911123456`), `0` if not E.164 |
//! | `region(number)` | ISO 3166 region (`"GB"`, `"US"`), `""` if none (e.g. `+800`) |
//! | `has_connector(name)` | whether the connector is configured |
//! | `configured(names)` | the names (an array) that are configured connectors, in order |
//! | `connector_ready(name)` | whether it is configured and can take submits now |
//! | `connectors()` | configured connector names |
//! | `local_hour(tz)`, `local_minute(tz)`, `local_weekday(tz)` | now in the IANA zone `tz` (weekday 1 = Monday … 7 = Sunday) |
//! | `next_local_time(tz, hour, minute)` | Unix seconds of the next `hour:minute` in `tz` |
//! | `unix_now()` | Unix seconds now |

use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rhai::{Array, Dynamic, Engine, EvalAltResult, INT, ImmutableString, Position};

use crate::connector::Health;

/// The current time; tests and `herald script test --at` pin it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What the gateway lends its scripts.
#[derive(Clone)]
pub struct ScriptEnv {
    /// Configured connector names. A route naming any other is refused.
    pub connectors: Arc<[String]>,
    pub health: Health,
    pub clock: Clock,
}

impl ScriptEnv {
    /// Connectors that are all ready, and the real clock: for checks and
    /// tests with no running gateway.
    pub fn offline(connectors: Vec<String>) -> Self {
        ScriptEnv {
            connectors: connectors.into(),
            health: Arc::new(|_| true),
            clock: Arc::new(Timestamp::now),
        }
    }

    /// Whether `name` is a configured connector.
    pub fn has_connector(&self, name: &str) -> bool {
        self.connectors.iter().any(|c| c == name)
    }
}

impl std::fmt::Debug for ScriptEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEnv")
            .field("connectors", &self.connectors)
            .finish_non_exhaustive()
    }
}

/// The value `reject(reason)` raises. A distinct type, so a script's own
/// `throw "x"` is an error, not a rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

/// Longest rejection reason passed on to the caller.
const MAX_REASON: usize = 200;

fn reject(reason: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    let reason: String = reason.trim().chars().take(MAX_REASON).collect();
    let reason = if reason.is_empty() {
        "rejected by script".to_string()
    } else {
        reason
    };
    Err(Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(Rejection(reason)),
        Position::NONE,
    )))
}

/// If `err` is (or wraps) a `reject(reason)`, the reason.
pub(crate) fn rejection(err: &EvalAltResult) -> Option<String> {
    match err.unwrap_inner() {
        EvalAltResult::ErrorRuntime(value, _) => {
            value.read_lock::<Rejection>().map(|r| r.0.clone())
        }
        _ => None,
    }
}

fn runtime_error(message: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(message.into(), Position::NONE))
}

fn zone(name: &str) -> Result<TimeZone, Box<EvalAltResult>> {
    TimeZone::get(name).map_err(|_| runtime_error(format!("unknown time zone '{name}'")))
}

fn local_now(clock: &Clock, tz: &str) -> Result<jiff::ZonedDateTime, Box<EvalAltResult>> {
    Ok(clock().to_zoned_datetime(zone(tz)?))
}

fn next_local_time(
    clock: &Clock,
    tz: &str,
    hour: INT,
    minute: INT,
) -> Result<INT, Box<EvalAltResult>> {
    let (Ok(h), Ok(m)) = (i8::try_from(hour), i8::try_from(minute)) else {
        return Err(runtime_error(format!("no time {hour}:{minute}")));
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(runtime_error(format!("no time {hour}:{minute}")));
    }
    let tz = zone(tz)?;
    let now = clock().to_zoned_datetime(tz.clone());
    let bad = |e: jiff::Error| runtime_error(format!("cannot compute {hour}:{minute}: {e}"));
    let today = now
        .date()
        .at(h, m, 0, 0)
        .to_zoned_datetime(tz.clone())
        .map_err(bad)?;
    let next = if today.timestamp() > now.timestamp() {
        today
    } else {
        now.date()
            .tomorrow()
            .map_err(bad)?
            .at(h, m, 0, 0)
            .to_zoned_datetime(tz)
            .map_err(bad)?
    };
    Ok(next.timestamp().as_second())
}

fn blocked_sleep() -> Result<(), Box<EvalAltResult>> {
    Err(runtime_error(
        "sleep is not available to Herald scripts: a call must not block".into(),
    ))
}

/// Registers Herald's helpers on `engine`.
pub(crate) fn register(engine: &mut Engine, env: ScriptEnv) {
    engine.register_type_with_name::<Rejection>("Rejection");
    engine.register_fn("reject", |reason: ImmutableString| reject(&reason));
    engine.register_fn("reject", || reject(""));

    // The standard `sleep` blocks the thread, beyond the reach of the
    // deadline; functions registered on the engine take precedence.
    engine.register_fn("sleep", |_: INT| blocked_sleep());
    engine.register_fn("sleep", |_: rhai::FLOAT| blocked_sleep());

    engine.register_fn("country_code", |number: ImmutableString| -> INT {
        crate::text::e164_country_code(&number).map_or(0, INT::from)
    });
    engine.register_fn("region", |number: ImmutableString| -> ImmutableString {
        crate::text::e164_region(&number).unwrap_or_default().into()
    });

    let e = env.clone();
    engine.register_fn("has_connector", move |name: ImmutableString| {
        e.has_connector(&name)
    });
    // Native, because filtering with a closure costs several microseconds
    // per call and every route would pay it.
    let e = env.clone();
    engine.register_fn("configured", move |names: Array| -> Array {
        names
            .into_iter()
            .filter(|n| {
                n.read_lock::<ImmutableString>()
                    .is_some_and(|s| e.has_connector(&s))
            })
            .collect()
    });
    let e = env.clone();
    engine.register_fn("connector_ready", move |name: ImmutableString| {
        e.has_connector(&name) && (e.health)(&name)
    });
    let e = env.clone();
    engine.register_fn("connectors", move || -> Array {
        e.connectors
            .iter()
            .map(|c| Dynamic::from(ImmutableString::from(c.as_str())))
            .collect()
    });

    let clock = env.clock.clone();
    engine.register_fn("unix_now", move || -> INT { clock().as_second() });
    let clock = env.clock.clone();
    engine.register_fn("local_hour", move |tz: ImmutableString| {
        local_now(&clock, &tz).map(|z| INT::from(z.hour()))
    });
    let clock = env.clock.clone();
    engine.register_fn("local_minute", move |tz: ImmutableString| {
        local_now(&clock, &tz).map(|z| INT::from(z.minute()))
    });
    let clock = env.clock.clone();
    engine.register_fn("local_weekday", move |tz: ImmutableString| {
        local_now(&clock, &tz).map(|z| INT::from(z.weekday().to_monday_one_offset()))
    });
    let clock = env.clock;
    engine.register_fn(
        "next_local_time",
        move |tz: ImmutableString, hour: INT, minute: INT| {
            next_local_time(&clock, &tz, hour, minute)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Clock {
        let t: Timestamp = rfc3339.parse().expect("timestamp");
        Arc::new(move || t)
    }

    #[test]
    fn next_local_time_is_later_today_or_tomorrow() {
        let clock = at("2026-06-01T20:30:00Z");
        // 21:30 in London (BST); 08:00 is tomorrow, 22:00 still today.
        let eight = next_local_time(&clock, "Europe/London", 8, 0).expect("time");
        let expected: Timestamp = "2026-06-02T07:00:00Z".parse().expect("ts");
        assert_eq!(eight, expected.as_second());
        let ten = next_local_time(&clock, "Europe/London", 22, 0).expect("time");
        let expected: Timestamp = "2026-06-01T21:00:00Z".parse().expect("ts");
        assert_eq!(ten, expected.as_second());
    }

    #[test]
    fn bad_times_and_zones_are_script_errors() {
        let clock = at("2026-06-01T20:30:00Z");
        assert!(next_local_time(&clock, "Europe/London", 24, 0).is_err());
        assert!(next_local_time(&clock, "Mars/Olympus", 8, 0).is_err());
    }

    #[test]
    fn rejection_reasons_are_trimmed_and_bounded() {
        let err = reject(&"x".repeat(500)).expect_err("rejects");
        assert_eq!(rejection(&err).map(|r| r.len()), Some(MAX_REASON));
        let err = reject("  ").expect_err("rejects");
        assert_eq!(rejection(&err).as_deref(), Some("rejected by script"));
    }
}
