//! `[log]`: leanproxy's own line format, the request log, redaction and the
//! journal.

use std::path::PathBuf;

use super::raw::RawLog;
use super::{given, Checker, LogFormat, LogSettings};

/// `log.format`'s values.
const FORMATS: &[(&str, LogFormat)] = &[("pretty", LogFormat::Pretty), ("json", LogFormat::Json)];

/// Validates `[log]`. The secrets to scrub are filled in from the whole
/// configuration ([`super::Settings::secrets`]).
pub(super) fn validate(c: &mut Checker, raw: &RawLog) -> LogSettings {
    let format = c
        .choice("log.format", &raw.format, FORMATS)
        .unwrap_or(LogFormat::Pretty);

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
            journal: given(&raw.journal).map(|path| crate::log::JournalConfig {
                path: PathBuf::from(path),
                max_bytes: raw.journal_max_bytes.max(1024),
                files: raw.journal_files,
            }),
        },
    }
}
