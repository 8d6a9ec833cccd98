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
}

impl Default for BroadcastsConfig {
    fn default() -> Self {
        BroadcastsConfig {
            exercise_group: "exercise".into(),
            exercise_prefix: "EXERCISE: ".into(),
        }
    }
}
