//! `harness eval --progress`: one JSON object per line on stderr while an
//! evaluation runs, for whoever draws a progress bar (`cargo xtask eval`).
//! Lines that do not parse as an event are the harness's ordinary
//! messages.
//!
//! May use: nothing else of the crate.

use serde::{Deserialize, Serialize};

/// One progress line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The dataset is listed and the model loaded; `total` images follow.
    Start {
        total: usize,
        model: String,
        device: String,
    },
    /// After each batch: images done so far (decoded or not), of which
    /// `failed` could not be decoded, `seconds` since the start.
    Batch {
        done: usize,
        failed: usize,
        total: usize,
        seconds: f64,
    },
    /// The report is being written.
    Writing,
}

impl ProgressEvent {
    /// The line the harness prints (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The event of `line`, or None for an ordinary message.
    pub fn parse(line: &str) -> Option<ProgressEvent> {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str(line).ok()
    }
}
