//! The `file` [`Source`] and its per-stream [`StreamReader`].

use super::config::{self, Format, StreamSettings};
use super::reader::{list_files, read_header, FileCheckpoint, ReaderState};
use crate::SourceContext;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    async_trait, Checkpoint, ConnectorError, Poll, Source, StreamReader, StreamSpec,
};

/// Reads CSV, NDJSON and text files named by a path or glob; see the
/// [module docs](super).
#[derive(Debug)]
pub struct FileSource {
    streams: BTreeMap<String, Arc<StreamSettings>>,
}

impl FileSource {
    /// Types and validates a `[source]` section with `type = "file"`.
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        Ok(FileSource {
            streams: config::resolve(section, ctx.batch_size)?,
        })
    }

    /// The names of the configured streams, sorted.
    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    fn stream(&self, name: &str) -> Result<Arc<StreamSettings>, ConnectorError> {
        self.streams.get(name).cloned().ok_or_else(|| {
            ConnectorError::config(format!(
                "the file source has no stream `{name}`; configured: {}",
                self.streams.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::fatal(format!("file source task failed: {e}")))?
}

fn check_stream(s: &StreamSettings) -> Result<(), ConnectorError> {
    if s.follow {
        // Files may appear later, but the directory they appear in must exist.
        if !s.search_dir.is_dir() {
            return Err(ConnectorError::config(format!(
                "stream `{}`: directory `{}` of path `{}` does not exist",
                s.name,
                s.search_dir.display(),
                s.configured
            )));
        }
    }
    let files = list_files(s)?;
    if files.is_empty() && !s.follow {
        return Err(ConnectorError::config(format!(
            "stream `{}`: no file matches path `{}` (looked for `{}`)",
            s.name, s.configured, s.pattern
        )));
    }
    for (key, path) in files {
        File::open(&path).map_err(|e| {
            ConnectorError::from_io(&format!("stream `{}`: cannot open {key}", s.name), &e)
        })?;
    }
    Ok(())
}

/// The stream's spec; for CSV with a header, a schema of string fields from
/// the header of the first matching file (when there is one).
fn describe(s: &StreamSettings) -> Result<StreamSpec, ConnectorError> {
    let mut spec = StreamSpec::new(s.name.clone());
    spec.primary_key = s.primary_key.clone();
    if s.format == Format::Csv && s.header {
        if let Some((key, path)) = list_files(s)?.into_iter().next() {
            let header = File::open(&path)
                .and_then(|f| read_header(s, &f, u64::MAX))
                .map_err(|e| {
                    ConnectorError::from_io(
                        &format!("stream `{}`: reading the header of {key}", s.name),
                        &e,
                    )
                })?;
            if let Some((names, _)) = header {
                let properties: Map<String, Value> = names
                    .into_iter()
                    .map(|n| (n, json!({"type": "string"})))
                    .collect();
                spec.json_schema = Some(json!({"type": "object", "properties": properties}));
            }
        }
    }
    Ok(spec)
}

#[async_trait]
impl Source for FileSource {
    /// Every stream's glob matches at least one readable file; with `follow`,
    /// its directory exists (files may come later).
    async fn check(&self) -> Result<(), ConnectorError> {
        let streams: Vec<_> = self.streams.values().cloned().collect();
        blocking(move || streams.iter().try_for_each(|s| check_stream(s))).await
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        let streams: Vec<_> = self.streams.values().cloned().collect();
        blocking(move || streams.iter().map(|s| describe(s)).collect()).await
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let settings = self.stream(&stream.name)?;
        let state = match checkpoint {
            Some(c) => c.to_state::<FileCheckpoint>().map_err(|e| {
                ConnectorError::fatal(format!(
                    "stream `{}`: the stored checkpoint is not a file-source checkpoint ({e}): {}",
                    stream.name,
                    c.as_json()
                ))
            })?,
            None => FileCheckpoint::default(),
        };
        Ok(Box::new(FileReader {
            inner: Arc::new(Mutex::new(Inner {
                state: ReaderState::new(settings, state),
                pending: None,
            })),
            thread: ReadThread::default(),
        }))
    }
}

/// Reads one file stream. Each poll reads one batch on a thread of the
/// reader's own, so a slow disk never stalls the async threads.
///
/// One thread for every batch, not tokio's blocking pool: the pool hands
/// each batch to whichever of its threads is idle, so a stream's records
/// were allocated on four threads, and the allocator kept pages cached
/// for each (about 1 MiB of a 1M-line run's peak, issue 25).
pub struct FileReader {
    inner: Arc<Mutex<Inner>>,
    thread: ReadThread,
}

struct Inner {
    state: ReaderState,
    /// A batch read by a poll whose future was dropped before it could
    /// return it: the next poll returns it first. This is what makes `poll`
    /// cancel-safe although the blocking read itself cannot be cancelled.
    pending: Option<Result<Poll, ConnectorError>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs one reader's reads in turn; it ends when the reader
/// is dropped. Started on the first poll.
#[derive(Default)]
struct ReadThread {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

impl ReadThread {
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let jobs = match &self.jobs {
            Some(jobs) => jobs,
            None => {
                let (tx, rx) = std::sync::mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("tributary-file".into())
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .map_err(|e| {
                        ConnectorError::retryable(format!(
                            "file source: cannot start a reader thread: {e}"
                        ))
                    })?;
                self.jobs.insert(tx)
            }
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        if jobs.send(job).is_err() {
            self.jobs = None;
            return Err(ConnectorError::fatal(
                "file source: the reader thread ended",
            ));
        }
        result.await.map_err(|_| {
            self.jobs = None;
            ConnectorError::fatal("file source: a read on the reader thread failed")
        })
    }
}

fn lock(inner: &Mutex<Inner>) -> Result<std::sync::MutexGuard<'_, Inner>, ConnectorError> {
    // A poisoned lock means a read panicked half-way: positions may not match
    // what was returned, so refuse to go on rather than risk a gap.
    inner.lock().map_err(|_| {
        ConnectorError::fatal("file reader state is corrupt after a panic; reopen the stream")
    })
}

#[async_trait]
impl StreamReader for FileReader {
    async fn poll(&mut self) -> Result<Poll, ConnectorError> {
        let inner = Arc::clone(&self.inner);
        self.thread
            .run(move || -> Result<(), ConnectorError> {
                let mut guard = lock(&inner)?;
                if guard.pending.is_none() {
                    let result = guard.state.read_batch();
                    guard.pending = Some(result);
                }
                Ok(())
            })
            .await??;
        let mut guard = lock(&self.inner)?;
        guard.pending.take().unwrap_or(Ok(Poll::Idle))
    }
}
