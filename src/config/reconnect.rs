//! `[reconnect]`: inspection, the registry's state file and history.

use std::path::{Path, PathBuf};

use super::raw::RawReconnect;
use super::{given, Checker, ReconnectSettings};

/// Validates `[reconnect]`; the state file defaults to one in `data_dir`.
pub(super) fn validate(c: &mut Checker, r: &RawReconnect, data_dir: &Path) -> ReconnectSettings {
    if r.inspect_limit == 0 {
        c.fail("reconnect.inspect_limit", "must be greater than zero");
    }
    ReconnectSettings {
        inspect_limit: r.inspect_limit,
        state_file: match given(&r.state_file) {
            None => data_dir.join("reconnects.json"),
            Some(path) => PathBuf::from(path),
        },
        history: r.history,
        reconnect_header: r.reconnect_header,
    }
}
