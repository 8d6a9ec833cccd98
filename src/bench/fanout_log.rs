//! The fan-out as the server itself measured it, read from its JSON log.
//!
//! The fan-out logs every chunk it writes at debug level
//! (`broadcast recipients queued`, with `created`, `refused` and `micros`:
//! audience read, message build and store write of that chunk). The
//! client-side counters only show messages leaving `queued`, which mixes
//! the fan-out with the carrier; these lines separate the two. Warnings, errors and
//! lines that are not JSON are passed on to the bench's stderr.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::Value;

/// The `tracing` filter a broadcast server runs with: warnings, plus the
/// fan-out's chunk records.
pub const TRACE: &str = "warn,herald::broadcast::fanout=debug";

/// The log message of one fan-out chunk.
const CHUNK_MESSAGE: &str = "broadcast recipients queued";

/// The chunks of one broadcast.
#[derive(Debug, Clone, Default)]
pub struct Chunks {
    /// `(created + refused, micros)` of each chunk, in log order.
    pub chunks: Vec<(u64, u64)>,
    pub created: u64,
    pub refused: u64,
    /// When the bench read the first and the last chunk record.
    pub first_seen: Option<Instant>,
    pub last_seen: Option<Instant>,
}

impl Chunks {
    /// Recipients handled (created + refused).
    pub fn recipients(&self) -> u64 {
        self.created + self.refused
    }

    /// Sum of the chunks' own timings, in seconds.
    pub fn write_seconds(&self) -> f64 {
        self.chunks.iter().map(|c| c.1).sum::<u64>() as f64 / 1e6
    }
}

/// Whether a line that is not a chunk record goes to the bench's stderr:
/// warnings and errors (what a server not traced would print), and
/// anything that is not a JSON record (a panic message).
fn worth_showing(line: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => matches!(v["level"].as_str(), Some("WARN" | "ERROR")),
        Err(_) => true,
    }
}

/// Chunk records by broadcast id, filled by a reader thread.
#[derive(Clone, Default)]
pub struct FanOutLog(Arc<Mutex<HashMap<String, Chunks>>>);

impl FanOutLog {
    /// Reads `log` (JSON lines) on a thread of its own until it closes.
    pub fn follow(log: ChildStderr) -> FanOutLog {
        let out = FanOutLog::default();
        let seen = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines() {
                let Ok(line) = line else { return };
                if !seen.record(&line) && worth_showing(&line) {
                    eprintln!("{line}");
                }
            }
        });
        out
    }

    /// Takes in one log line; whether it was a chunk record.
    fn record(&self, line: &str) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let fields = &v["fields"];
        if fields["message"].as_str() != Some(CHUNK_MESSAGE) {
            return false;
        }
        let (Some(id), Some(created), Some(micros)) = (
            fields["broadcast"].as_str(),
            fields["created"].as_u64(),
            fields["micros"].as_u64(),
        ) else {
            return false;
        };
        let refused = fields["refused"].as_u64().unwrap_or(0);
        let now = Instant::now();
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let c = all.entry(id.to_string()).or_default();
        c.chunks.push((created + refused, micros));
        c.created += created;
        c.refused += refused;
        c.first_seen.get_or_insert(now);
        c.last_seen = Some(now);
        true
    }

    /// What was read of broadcast `id` so far.
    pub fn of(&self, id: &str) -> Chunks {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_records_are_summed_and_other_lines_passed_on() {
        let log = FanOutLog::default();
        let line = |created: u64, micros: u64| {
            format!(
                r#"{{"timestamp":"t","level":"DEBUG","fields":{{"message":"{CHUNK_MESSAGE}","broadcast":"b1","connector":"sim","created":{created},"refused":1,"micros":{micros}}},"target":"herald::broadcast::fanout"}}"#
            )
        };
        assert!(log.record(&line(10, 1000)));
        assert!(log.record(&line(20, 3000)));
        assert!(!log.record(r#"{"fields":{"message":"store unavailable"}}"#));
        assert!(!log.record("not json"));
        let c = log.of("b1");
        assert_eq!(c.created, 30);
        assert_eq!(c.refused, 2);
        assert_eq!(c.recipients(), 32);
        assert_eq!(c.chunks, vec![(11, 1000), (21, 3000)]);
        assert!((c.write_seconds() - 0.004).abs() < 1e-9);
        assert_eq!(log.of("b2").recipients(), 0);
        assert!(worth_showing(r#"{"level":"WARN","fields":{}}"#));
        assert!(!worth_showing(r#"{"level":"INFO","fields":{}}"#));
        assert!(worth_showing("thread 'main' panicked"));
    }
}
