//! `[log]`: leanproxy's own line format, the request log, redaction and the
//! journal.

use std::path::PathBuf;

use super::raw::RawLog;
use super::{Checker, LogFormat, LogSettings};

/// Validates `[log]`. The secrets to scrub are filled in from the whole
/// configuration ([`super::Settings::secrets`]).
pub(super) fn validate(c: &mut Checker, raw: &RawLog) -> LogSettings {
    let format = match raw.format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            c.fail(
                "log.format",
                format!("`{other}` is not one of \"pretty\", \"json\""),
            );
            LogFormat::Pretty
        }
    };

    LogSettings {
        format,
        requests: crate::log::LogConfig {
            ring_entries: raw.ring,
            ring_bytes: raw.ring_bytes,
            capture_limit: raw.capture,
            redact: raw.redact,
            // Filled in from the whole configuration.
            known_secrets: Vec::new(),
            lines_per_second: raw.lines_per_second,
            journal: (!raw.journal.trim().is_empty()).then(|| crate::log::JournalConfig {
                path: PathBuf::from(&raw.journal),
                max_bytes: raw.journal_max_bytes.max(1024),
                files: raw.journal_files,
            }),
        },
    }
}
