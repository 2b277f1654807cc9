//! The journal: completed exchanges appended as JSON lines to a file, rotated by
//! size (`file`, `file.1`, ... `file.N`). It writes on its own thread; a full disk
//! or an unwritable path is reported once per failure streak and never stops or
//! slows the proxy (lines are dropped while it cannot write).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use super::record::ExchangeRecord;

/// Journal settings.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The file.
    pub path: PathBuf,
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub files: usize,
}

/// The journal handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Journal {
    tx: SyncSender<Arc<ExchangeRecord>>,
    dropped: Arc<AtomicU64>,
}

impl Journal {
    /// Starts the writer thread.
    pub fn start(config: JournalConfig) -> Self {
        let (tx, rx) = sync_channel::<Arc<ExchangeRecord>>(4096);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("leanproxy-journal".into())
            .spawn(move || {
                let mut writer = Writer::new(config);
                while let Ok(record) = rx.recv() {
                    if !writer.append(&record) {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the journal thread; the journal is off");
        }
        Self { tx, dropped }
    }

    /// Queues a record; never blocks (a full queue drops it and counts it).
    pub fn append(&self, record: Arc<ExchangeRecord>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(record)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records not written (queue full or write failures).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

struct Writer {
    config: JournalConfig,
    file: Option<File>,
    size: u64,
    failing: bool,
}

impl Writer {
    fn new(config: JournalConfig) -> Self {
        Self {
            config,
            file: None,
            size: 0,
            failing: false,
        }
    }

    fn report(&mut self, what: &str, e: &std::io::Error) {
        if !self.failing {
            tracing::error!(journal = %self.config.path.display(), error = %e, "{what}; exchanges are not journaled until it works again");
            self.failing = true;
        }
        self.file = None;
    }

    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self
            .config
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let path = &self.config.path;
        let numbered = |n: usize| -> PathBuf {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.config.files == 0 {
            std::fs::remove_file(path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.config.files));
            for n in (1..self.config.files).rev() {
                if numbered(n).exists() {
                    std::fs::rename(numbered(n), numbered(n + 1))?;
                }
            }
            std::fs::rename(path, numbered(1))?;
        }
        self.open()
    }

    /// Writes one line; false when it could not.
    fn append(&mut self, record: &ExchangeRecord) -> bool {
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        if self.file.is_none() {
            if let Err(e) = self.open() {
                self.report("cannot open the journal", &e);
                return false;
            }
        }
        if self.size + line.len() as u64 > self.config.max_bytes && self.size > 0 {
            if let Err(e) = self.rotate() {
                self.report("cannot rotate the journal", &e);
                return false;
            }
        }
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        match file.write_all(&line) {
            Ok(()) => {
                self.size += line.len() as u64;
                if self.failing {
                    tracing::info!(journal = %self.config.path.display(), "the journal is written again");
                    self.failing = false;
                }
                true
            }
            Err(e) => {
                self.report("cannot write the journal", &e);
                false
            }
        }
    }
}

/// The journal file and its rotated siblings, newest first (for tests and tools).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_owned()];
    for n in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out
}
