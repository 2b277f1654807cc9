//! The registry's state file: what is written, how it is read back record by
//! record, and how it is replaced atomically.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::registry::Record;

/// What is written to the state file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Persisted {
    pub(super) version: u32,
    pub(super) records: Vec<Record>,
    pub(super) history: Vec<Record>,
}

/// A state file read record by record.
pub(super) struct Salvaged {
    pub(super) persisted: Persisted,
    /// Records that did not parse.
    pub(super) dropped: usize,
}

/// Reads a state file keeping every record that parses; an error only when
/// the file is not a JSON object at all.
pub(super) fn salvage(bytes: &[u8]) -> Result<Salvaged, serde_json::Error> {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        version: u32,
        #[serde(default)]
        records: Vec<serde_json::Value>,
        #[serde(default)]
        history: Vec<serde_json::Value>,
    }
    let loose: Loose = serde_json::from_slice(bytes)?;
    let mut dropped = 0;
    let mut parse = |values: Vec<serde_json::Value>| -> Vec<Record> {
        values
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).map_err(|_| dropped += 1).ok())
            .collect()
    };
    let records = parse(loose.records);
    let history = parse(loose.history);
    Ok(Salvaged {
        persisted: Persisted {
            version: loose.version,
            records,
            history,
        },
        dropped,
    })
}

pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
