//! The `sql` [`Source`]: configured (or discovered) streams, resolved
//! against the catalog at every open, read by a [`Run`] each.

use super::config::{self, CursorKind, Settings, StreamDef};
use super::db::Db;
use super::dialect::Dialect;
use super::ident::TableName;
use super::plan::Plan;
use super::reader::{Run, SqlCheckpoint, FULL_REFRESH, INCREMENTAL};
use crate::SourceContext;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    async_trait, Checkpoint, ConnectorError, RunProgress, Source, StreamReader, StreamSpec,
};

/// Reads PostgreSQL, MySQL/MariaDB and SQLite tables and queries; see the
/// [module docs](super).
pub struct SqlSource {
    settings: Arc<Settings>,
    streams: BTreeMap<String, Arc<StreamDef>>,
    discover_all: bool,
    /// Created on first use: building a pool needs the async runtime, and
    /// building the source must not (config checks run without one).
    db: Mutex<Option<Arc<Db>>>,
    /// Plans `discover` just resolved, each taken by the stream's next
    /// `open` if that comes within [`FRESH_PLAN`]: the runtime discovers
    /// then opens at once, and resolving twice cost four more catalog
    /// round trips per stream before the first row. Later runs resolve
    /// again, so a changed table is seen.
    fresh: Mutex<HashMap<String, (Instant, Plan)>>,
}

/// How long a plan resolved by `discover` may be reused by `open`.
const FRESH_PLAN: Duration = Duration::from_secs(5);

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("url", &self.settings.shown_url)
            .field("streams", &self.streams.keys().collect::<Vec<_>>())
            .field("discover_all", &self.discover_all)
            .finish()
    }
}

impl SqlSource {
    /// Types and validates a `[source]` section with `type = "sql"` (no I/O).
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let r = config::resolve(section, ctx.batch_size)?;
        Ok(SqlSource {
            settings: r.settings,
            streams: r.streams,
            discover_all: r.discover_all,
            db: Mutex::new(None),
            fresh: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn db(&self) -> Result<Arc<Db>, ConnectorError> {
        let mut guard = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = guard.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(Db::connect_lazy(&self.settings)?);
        *guard = Some(db.clone());
        Ok(db)
    }

    /// The definition of a stream: configured, or (discovery mode) the
    /// table of that name in the schema.
    fn def(&self, name: &str) -> Result<Arc<StreamDef>, ConnectorError> {
        if let Some(d) = self.streams.get(name) {
            return Ok(d.clone());
        }
        if self.discover_all {
            let table = TableName::parse(name).map_err(ConnectorError::config)?;
            return Ok(Arc::new(StreamDef::table(
                name.to_string(),
                TableName {
                    schema: self.settings.schema.clone(),
                    name: table.name,
                },
                &self.settings,
            )));
        }
        Err(ConnectorError::config(format!(
            "the sql source has no stream `{name}`; configured: {}",
            self.streams.keys().cloned().collect::<Vec<_>>().join(", ")
        )))
    }

    /// Every stream's definition: configured ones, or one per table.
    async fn defs(&self, db: &Db) -> Result<Vec<Arc<StreamDef>>, ConnectorError> {
        if !self.discover_all {
            return Ok(self.streams.values().cloned().collect());
        }
        let schema = db.default_schema(self.settings.schema.as_deref()).await?;
        let tables = db.list_tables(&schema).await?;
        Ok(tables
            .into_iter()
            .map(|t| {
                Arc::new(StreamDef::table(
                    t.clone(),
                    TableName {
                        schema: Some(schema.clone()),
                        name: t,
                    },
                    &self.settings,
                ))
            })
            .collect())
    }
}

#[async_trait]
impl Source for SqlSource {
    /// Connects, then resolves every configured stream against the catalog:
    /// unknown tables and columns, unsupported types and unusable cursors
    /// are reported here, before any data is read.
    async fn check(&self) -> Result<(), ConnectorError> {
        let db = self.db()?;
        db.ping().await?;
        for def in self.defs(&db).await? {
            Plan::resolve(&db, &self.settings, &def).await?;
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        let db = self.db()?;
        let mut specs = Vec::new();
        let mut fresh = HashMap::new();
        for def in self.defs(&db).await? {
            let plan = Plan::resolve(&db, &self.settings, &def).await?;
            specs.push(plan.spec.clone());
            fresh.insert(def.name.clone(), (Instant::now(), plan));
        }
        *self.fresh.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(specs)
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let def = self.def(&stream.name)?;
        let db = self.db()?;
        let fresh = self
            .fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream.name)
            .filter(|(at, _)| at.elapsed() < FRESH_PLAN);
        let plan = match fresh {
            Some((_, plan)) => plan,
            None => Plan::resolve(&db, &self.settings, &def).await?,
        };
        let start = match &checkpoint {
            Some(c) => SqlCheckpoint::parse(&stream.name, c)?,
            None => SqlCheckpoint::default(),
        };
        let mode = if plan.cursor.is_some() {
            INCREMENTAL
        } else {
            FULL_REFRESH
        };
        if !start.mode.is_empty() && start.mode != mode {
            return Err(ConnectorError::fatal(format!(
                "stream `{}`: the checkpoint was written in {} mode, but the stream is now {mode}. Reset the stream (`tributary state reset CONFIG --stream {}`) to read it again from the start",
                stream.name, start.mode, stream.name
            )));
        }
        let after = if mode == INCREMENTAL || start.in_progress {
            start.position(&stream.name, &plan.keyset)?
        } else {
            None
        };
        let (mut sql_bound, mut cutoff, mut repeated_from) = (None, None, None);
        if let Some(c) = &plan.cursor {
            if c.kind == CursorKind::Timestamp {
                let lag = chrono::Duration::from_std(c.lag).unwrap_or(chrono::Duration::MAX);
                let now = db.now().await?;
                let bound = now
                    .checked_sub_signed(lag)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
                if db.dialect == Dialect::Sqlite {
                    cutoff = Some(bound);
                } else {
                    sql_bound = plan.bound_value(bound);
                    repeated_from = plan.repeated_from(bound);
                    if let Some(from) = &repeated_from {
                        tracing::info!(
                            stream = %stream.name,
                            bound = %sql_bound.as_ref().and_then(serde_json::Value::as_str).unwrap_or_default(),
                            repeated_from = %from.as_str().unwrap_or_default(),
                            "the cursor's bound is in a repeated (fall-back) hour of `timezone`; the next run reads that hour again"
                        );
                    }
                }
            }
        }
        Ok(Box::new(
            Run {
                db,
                plan: Arc::new(plan),
                start,
                after,
                sql_bound,
                cutoff,
                repeated_from,
                query_timeout: self.settings.query_timeout,
            }
            .spawn(),
        ))
    }

    fn run_progress(&self, stream: &StreamSpec, checkpoint: &Checkpoint) -> RunProgress {
        SqlCheckpoint::parse(&stream.name, checkpoint)
            .map(|c| c.run_progress())
            .unwrap_or(RunProgress::Unknown)
    }

    async fn close(&self) -> Result<(), ConnectorError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(db) = db {
            db.close().await;
        }
        Ok(())
    }
}
