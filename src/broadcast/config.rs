//! `[broadcasts]` settings (a leaf module: the config layer reads it).

use serde::{Deserialize, Serialize};

/// `[broadcasts]`: how exercises are kept away from the public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastsConfig {
    /// The only group an exercise reaches.
    pub exercise_group: String,
    /// Put in front of every exercise text.
    pub exercise_prefix: String,
    /// Whether a broadcast made from a CAP alert waits for a second
    /// principal's approval, like any other.
    pub cap_requires_approval: bool,
}

impl Default for BroadcastsConfig {
    fn default() -> Self {
        BroadcastsConfig {
            exercise_group: "exercise".into(),
            exercise_prefix: "EXERCISE: ".into(),
            cap_requires_approval: true,
        }
    }
}
