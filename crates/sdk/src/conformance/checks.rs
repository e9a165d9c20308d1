//! The checks themselves; see the table in the [module docs](super).

use super::{
    first_difference, first_difference_from, ids, poll_cut, Cut, CutPoll, Kit, Read, Violation,
};
use serde_json::{json, Value};
use std::sync::Arc;
use tributary_core::{Checkpoint, Poll, Source, StreamReader};
use tributary_sources::SourceContext;
use tributary_state::{EmbeddedStore, StateStore};

impl Kit {
    /// Every checkpoint the stream gives survives the JSON text and the
    /// embedded state store unchanged, and a new source instance opens
    /// from it and polls.
    pub async fn checkpoint_round_trip(&self) -> Result<(), Violation> {
        const C: &str = "checkpoint_round_trip";
        let reads = self.reference(C).await?;
        let dir = tempfile::tempdir()
            .map_err(|e| Violation::new(C, format!("no scratch directory: {e}")))?;
        for i in self.sample(reads.len()) {
            let cp = &reads[i].checkpoint;
            if cp.as_json().is_null() {
                return Err(Violation::new(
                    C,
                    format!(
                        "batch {} has a null checkpoint: nothing to resume from",
                        i + 1
                    ),
                ));
            }
            let text = serde_json::to_string(cp).map_err(|e| {
                Violation::new(
                    C,
                    format!("checkpoint {} does not serialize: {e}", cp.as_json()),
                )
            })?;
            let back: Checkpoint = serde_json::from_str(&text).map_err(|e| {
                Violation::new(
                    C,
                    format!("checkpoint text {text} does not parse back: {e}"),
                )
            })?;
            if &back != cp {
                return Err(Violation::new(
                    C,
                    format!(
                        "checkpoint {} came back from JSON as {}",
                        cp.as_json(),
                        back.as_json()
                    ),
                ));
            }
            let stored = store_round_trip(dir.path(), &format!("s{i}"), cp)
                .await
                .map_err(|e| Violation::new(C, e))?;
            if &stored != cp {
                return Err(Violation::new(
                    C,
                    format!(
                        "checkpoint {} came back from the state store as {}",
                        cp.as_json(),
                        stored.as_json()
                    ),
                ));
            }
            let source = self.source(C).await?;
            let spec = self.spec(C, source.as_ref()).await?;
            let mut reader = self.open(C, source.as_ref(), &spec, Some(stored)).await?;
            self.poll(C, reader.as_mut()).await?;
        }
        Ok(())
    }

    /// For batches spread over the stream: read up to the batch, commit
    /// it, drop the source (a crash); a fresh source opened from that
    /// checkpoint gives exactly the records after it: no repeat, no gap.
    pub async fn restart_continues_exactly(&self) -> Result<(), Violation> {
        const C: &str = "restart_continues_exactly";
        let reads = self.reference(C).await?;
        let all = ids(&reads);
        for i in self.sample(reads.len().saturating_sub(1)) {
            let (committed, done) = self.read_and_crash(C, i + 1, i + 1, None).await?;
            let done = self.prefix_of(C, &all, &done)?;
            let rest = self.restart_from(C, committed.clone()).await?;
            if let Some(d) = first_difference_from(&all, done, &ids(&rest)) {
                return Err(Violation::new(
                    C,
                    format!(
                        "restarted from the checkpoint committed after {done} records ({}): {d}",
                        committed.as_json()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A crash with batches delivered but not committed (the sink had not
    /// acknowledged them) and a poll in flight: a fresh source from the
    /// committed checkpoint gives every record after it again, and none
    /// before it (duplicates only after the last commit).
    pub async fn resume_after_crash(&self) -> Result<(), Violation> {
        const C: &str = "resume_after_crash";
        let reads = self.reference(C).await?;
        let all = ids(&reads);
        for i in self.sample(reads.len().saturating_sub(1)) {
            // Batches up to i committed, i+1 (and what the dropped poll
            // was fetching) delivered only.
            let delivered = (i + 2).min(reads.len());
            let (committed, done) = self
                .read_and_crash(C, delivered, i + 1, Some(Cut::Yields(1)))
                .await?;
            let done = self.prefix_of(C, &all, &done)?;
            let rest = self.restart_from(C, committed.clone()).await?;
            let got = ids(&rest);
            let owed = &all[done..];
            if let Some(lost) = owed.iter().find(|id| !got.contains(id)) {
                return Err(Violation::new(
                    C,
                    format!(
                        "after a crash with {} uncommitted batch(es), a restart from the checkpoint committed after {done} records ({}) never gave `{lost}` again: it is lost",
                        delivered - i - 1,
                        committed.as_json()
                    ),
                ));
            }
            if let Some(dup) = got
                .iter()
                .find(|id| all[..done].contains(id) && !owed.contains(id))
            {
                return Err(Violation::new(
                    C,
                    format!(
                        "a restart from the checkpoint committed after {done} records gave `{dup}` again, which was committed before it"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Polls dropped at once, after a few scheduler turns and after a few
    /// milliseconds, then read on as the runtime does (the same reader
    /// for readers whose polls commits interrupt, else a new reader from
    /// the last checkpoint): the records are those of an uncut read, in
    /// order, none missing, none twice.
    pub async fn cancel_safe_poll(&self) -> Result<(), Violation> {
        const C: &str = "cancel_safe_poll";
        let reads = self.reference(C).await?;
        let want = ids(&reads);
        let cuts = [
            Cut::Yields(0),
            Cut::Yields(1),
            Cut::Yields(3),
            Cut::Yields(20),
            Cut::After(std::time::Duration::from_millis(1)),
            Cut::After(std::time::Duration::from_millis(20)),
        ];
        for cut in &cuts {
            self.reset_upstream().await;
            let source = self.source(C).await?;
            let spec = self.spec(C, source.as_ref()).await?;
            let mut reader = self.open(C, source.as_ref(), &spec, None).await?;
            let mut got: Vec<Read> = Vec::new();
            let mut last: Option<Checkpoint> = None;
            let mut dropped = 0;
            // Cut every other poll of the run.
            loop {
                let cut_now = got.len() % 2 == 1 || got.is_empty();
                let outcome = if cut_now {
                    poll_cut(reader.as_mut(), cut).await
                } else {
                    CutPoll::Finished(reader.poll().await)
                };
                match outcome {
                    CutPoll::Finished(Ok(Poll::Batch(b))) => {
                        self.commit(C, reader.as_mut(), &b.checkpoint).await?;
                        last = Some(b.checkpoint.clone());
                        got.push(Read {
                            ids: b.records.iter().map(|r| (self.identity)(r)).collect(),
                            checkpoint: b.checkpoint,
                        });
                    }
                    CutPoll::Finished(Ok(_)) => break,
                    CutPoll::Finished(Err(e)) => {
                        return Err(Violation::new(
                            C,
                            format!("poll failed after a dropped poll: {e}"),
                        ))
                    }
                    CutPoll::Dropped => {
                        dropped += 1;
                        if !reader.commits_interrupt_poll() {
                            // The runtime drops such a reader with the
                            // poll (shutdown) and reopens from the
                            // committed checkpoint.
                            let _ = reader.close().await;
                            reader = self.open(C, source.as_ref(), &spec, last.clone()).await?;
                        }
                        // The runtime then polls to completion; so do we.
                        match self.poll(C, reader.as_mut()).await? {
                            Some(read) => {
                                self.commit(C, reader.as_mut(), &read.checkpoint).await?;
                                last = Some(read.checkpoint.clone());
                                got.push(read);
                            }
                            None => break,
                        }
                    }
                }
                if got.len() > reads.len() * 2 + 10 {
                    break;
                }
            }
            let _ = reader.close().await;
            if let Some(d) = first_difference(&want, &ids(&got)) {
                let how = match cut {
                    Cut::Yields(n) => format!("after {n} scheduler turn(s)"),
                    Cut::After(d) => format!("after {d:?}"),
                };
                return Err(Violation::new(
                    C,
                    format!("with polls dropped {how} ({dropped} dropped): {d}"),
                ));
            }
        }
        Ok(())
    }

    /// Bad input is an error naming where it is, never a panic: the
    /// config with each `[source]` key removed, given a value of the wrong
    /// type, and with an unknown key; checkpoints that are not the
    /// source's; and the upstream data of every [`Kit::malformed`].
    pub async fn malformed_input(&self) -> Result<(), Violation> {
        const C: &str = "malformed_input";
        self.malformed_config(C)?;
        self.malformed_checkpoints(C).await?;
        for (name, setup) in &self.malformed {
            self.reset_upstream().await;
            setup().await;
            let kit = self.clone();
            let outcome = tokio::spawn(async move {
                let source = kit.source(C).await?;
                let spec = kit.spec(C, source.as_ref()).await?;
                let mut reader = kit.open(C, source.as_ref(), &spec, None).await?;
                let mut bad = 0;
                loop {
                    match kit.timed(C, "poll", reader.poll()).await? {
                        Ok(Poll::Batch(b)) => bad += b.bad_records.len(),
                        Ok(_) => return Ok::<_, Violation>(if bad > 0 { Ok(()) } else { Err(()) }),
                        Err(_) => return Ok(Ok(())),
                    }
                }
            })
            .await;
            self.reset_upstream().await;
            match outcome {
                Err(e) if e.is_panic() => {
                    return Err(Violation::new(C, format!("reading the malformed upstream `{name}` panicked: {}", panic_text(e.into_panic()))))
                }
                Err(e) => return Err(Violation::new(C, format!("reading `{name}`: {e}"))),
                Ok(Err(v)) => return Err(v),
                Ok(Ok(Err(()))) => {
                    return Err(Violation::new(
                        C,
                        format!("the malformed upstream `{name}` was read without an error or a bad record: bad input passed silently"),
                    ))
                }
                Ok(Ok(Ok(()))) => {}
            }
        }
        Ok(())
    }

    fn malformed_config(&self, check: &'static str) -> Result<(), Violation> {
        let doc: toml::Table = self
            .text
            .parse()
            .map_err(|e| Violation::new(check, format!("the kit's config is not TOML: {e}")))?;
        let Some(source) = doc.get("source").and_then(|s| s.as_table()) else {
            return Err(Violation::new(
                check,
                "the kit's config has no [source] table",
            ));
        };
        let mut mutations: Vec<(String, toml::Table)> = Vec::new();
        let mut unknown = source.clone();
        unknown.insert("conformance_unknown_key".into(), toml::Value::Integer(1));
        mutations.push(("an unknown key".into(), unknown));
        for (path, value) in leaves(source, "") {
            if path == "type" {
                continue;
            }
            let mut removed = source.clone();
            edit(&mut removed, &path, None);
            mutations.push((format!("`source.{path}` removed"), removed));
            for wrong in wrong_types(&value) {
                let mut t = source.clone();
                let shown = wrong.to_string();
                edit(&mut t, &path, Some(wrong));
                mutations.push((format!("`source.{path}` = {shown}"), t));
            }
        }
        for (what, table) in mutations {
            let mut d = doc.clone();
            d.insert("source".into(), toml::Value::Table(table));
            let text = toml::to_string(&d).map_err(|e| {
                Violation::new(check, format!("cannot write the mutated config: {e}"))
            })?;
            let kit = self.clone();
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let config = kit.config(&text)?;
                let ctx =
                    SourceContext::from_config(&config, Arc::new(tributary_core::SystemClock));
                kit.source_type.build(&config.source, &ctx).map(|_| ())
            }));
            match built {
                Err(p) => {
                    return Err(Violation::new(
                        check,
                        format!(
                            "the config with {what} panicked the constructor: {}",
                            panic_text(p)
                        ),
                    ))
                }
                Ok(Err(e)) if e.line.is_none() => {
                    return Err(Violation::new(
                        check,
                        format!("the config with {what} was refused without a line number: {e}"),
                    ))
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    async fn malformed_checkpoints(&self, check: &'static str) -> Result<(), Violation> {
        let reads = self.reference(check).await?;
        let mut garbage = vec![
            json!(null),
            json!(42),
            json!("garbage"),
            json!([1, 2, 3]),
            json!({}),
            json!({"conformance": {"nested": [true, null]}}),
        ];
        // The source's own checkpoint with each field of the wrong type.
        if let Value::Object(fields) = reads[0].checkpoint.as_json() {
            for key in fields.keys() {
                for wrong in [json!("garbage"), json!(-1), json!({"x": []}), json!(null)] {
                    let mut m = fields.clone();
                    m.insert(key.clone(), wrong);
                    garbage.push(Value::Object(m));
                }
            }
        }
        for value in garbage {
            self.reset_upstream().await;
            let kit = self.clone();
            let shown = value.to_string();
            let outcome = tokio::spawn(async move {
                let source = kit.source(check).await?;
                let spec = kit.spec(check, source.as_ref()).await?;
                if let Ok(Ok(mut reader)) = kit
                    .timed(check, "open", source.open(&spec, Some(Checkpoint(value))))
                    .await
                {
                    let _ = kit.timed(check, "poll", reader.poll()).await?;
                }
                Ok::<_, Violation>(())
            })
            .await;
            match outcome {
                Err(e) if e.is_panic() => {
                    return Err(Violation::new(
                        check,
                        format!(
                            "opening from the checkpoint {shown} panicked: {}",
                            panic_text(e.into_panic())
                        ),
                    ))
                }
                Err(e) => return Err(Violation::new(check, format!("checkpoint {shown}: {e}"))),
                Ok(r) => r?,
            }
        }
        Ok(())
    }

    /// `check` and `discover` leave the upstream as they found it (by
    /// [`Kit::observe`]'s snapshot), read no data away (a full read after
    /// them gives the whole stream), and `discover` answers the same twice.
    pub async fn no_side_effects(&self) -> Result<(), Violation> {
        const C: &str = "no_side_effects";
        let reads = self.reference(C).await?;
        self.reset_upstream().await;
        let before = match &self.observe {
            Some(o) => Some(o().await),
            None => None,
        };
        let source = self.source(C).await?;
        self.timed(C, "check", source.check()).await?.map_err(|e| {
            Violation::new(C, format!("check failed against the test upstream: {e}"))
        })?;
        let first = self.timed(C, "discover", source.discover()).await?;
        let second = self.timed(C, "discover", source.discover()).await?;
        match (first, second) {
            (Ok(a), Ok(b)) if a != b => {
                return Err(Violation::new(
                    C,
                    format!("discover answered differently twice: {a:?} then {b:?}"),
                ))
            }
            (Err(e), _) | (_, Err(e)) => {
                return Err(Violation::new(C, format!("discover failed: {e}")))
            }
            _ => {}
        }
        drop(source);
        if let (Some(before), Some(observe)) = (before, &self.observe) {
            let after = observe().await;
            if after != before {
                return Err(Violation::new(
                    C,
                    format!(
                        "check/discover changed the upstream: before {before:?}, after {after:?}"
                    ),
                ));
            }
        }
        // No reset: what check and discover left is what a run reads.
        let source = self.source(C).await?;
        let spec = self.spec(C, source.as_ref()).await?;
        let mut reader = self.open(C, source.as_ref(), &spec, None).await?;
        let got = self.read_rest(C, reader.as_mut(), true).await?;
        if let Some(d) = first_difference(&ids(&reads), &ids(&got)) {
            return Err(Violation::new(
                C,
                format!("a read after check and discover differs from one without them: {d}"),
            ));
        }
        Ok(())
    }

    /// Reads (and commits) `delivered` batches of a fresh read, committing
    /// only the first `commit`; then, with `cut`, drops a poll in flight;
    /// then drops everything, as a crash would. Returns the committed
    /// checkpoint.
    pub(super) async fn read_and_crash(
        &self,
        check: &'static str,
        delivered: usize,
        commit: usize,
        cut: Option<Cut>,
    ) -> Result<(Checkpoint, Vec<String>), Violation> {
        self.reset_upstream().await;
        let source = self.source(check).await?;
        let spec = self.spec(check, source.as_ref()).await?;
        let mut reader = self.open(check, source.as_ref(), &spec, None).await?;
        let mut committed = None;
        let mut done = Vec::new();
        for n in 0..delivered {
            let Some(read) = self.poll(check, reader.as_mut()).await? else {
                return Err(Violation::new(check, format!("the stream ended after {n} batches; the first read had more (is the upstream's data fixed, or does the kit need a reset hook?)")));
            };
            if n < commit {
                self.commit(check, reader.as_mut(), &read.checkpoint)
                    .await?;
                committed = Some(read.checkpoint);
                done.extend(read.ids);
            }
        }
        if let Some(cut) = cut {
            let _ = poll_cut(reader.as_mut(), &cut).await;
        }
        drop(reader);
        drop(source);
        let committed = committed.ok_or_else(|| Violation::new(check, "no batch was committed"))?;
        Ok((committed, done))
    }

    /// How many records `done` (what a trial committed) covers of the
    /// reference `all`, which it must begin. Push sources batch by arrival,
    /// so trials are compared by records, not batch numbers.
    fn prefix_of(
        &self,
        check: &'static str,
        all: &[&str],
        done: &[String],
    ) -> Result<usize, Violation> {
        let done: Vec<&str> = done.iter().map(String::as_str).collect();
        match first_difference(&all[..done.len().min(all.len())], &done) {
            None => Ok(done.len()),
            Some(d) => Err(Violation::new(check, format!("a second read from the beginning differs from the first: {d} (is the upstream's data fixed, or does the kit need a reset hook?)"))),
        }
    }

    pub(super) async fn restart_from(
        &self,
        check: &'static str,
        checkpoint: Checkpoint,
    ) -> Result<Vec<Read>, Violation> {
        let source: Box<dyn Source> = self.source(check).await?;
        let spec = self.spec(check, source.as_ref()).await?;
        let mut reader: Box<dyn StreamReader> = self
            .open(check, source.as_ref(), &spec, Some(checkpoint))
            .await?;
        let rest = self.read_rest(check, reader.as_mut(), true).await?;
        let _ = reader.close().await;
        let _ = source.close().await;
        Ok(rest)
    }
}

/// Commits `cp` to a new embedded store, closes it, opens it again and
/// loads it: the path every checkpoint takes between two runs.
async fn store_round_trip(
    dir: &std::path::Path,
    name: &str,
    cp: &Checkpoint,
) -> Result<Checkpoint, String> {
    {
        let store = EmbeddedStore::open(dir, name).map_err(|e| format!("state store: {e}"))?;
        store
            .commit(&[("s".to_string(), cp.clone())])
            .await
            .map_err(|e| format!("committing {} to the state store failed: {e}", cp.as_json()))?;
    }
    let store = EmbeddedStore::open(dir, name).map_err(|e| format!("state store: {e}"))?;
    store
        .load("s")
        .await
        .map_err(|e| format!("loading from the state store failed: {e}"))?
        .map(|s| s.checkpoint)
        .ok_or_else(|| {
            format!(
                "checkpoint {} was committed but not found again",
                cp.as_json()
            )
        })
}

/// Every value of a table that is not itself a table, by dotted path.
fn leaves(table: &toml::Table, prefix: &str) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => {
                out.push((path.clone(), v.clone()));
                out.extend(leaves(t, &path));
            }
            _ => out.push((path, v.clone())),
        }
    }
    out
}

fn wrong_types(v: &toml::Value) -> Vec<toml::Value> {
    use toml::Value as V;
    match v {
        V::String(_) => vec![V::Integer(-1), V::Array(vec![])],
        V::Integer(_) | V::Float(_) => vec![
            V::String("not a number".into()),
            V::Integer(-1),
            V::Integer(i64::MAX),
        ],
        V::Boolean(_) => vec![V::String("yes".into())],
        V::Array(_) => vec![
            V::String("not a list".into()),
            V::Array(vec![V::Integer(7)]),
        ],
        V::Table(_) => vec![V::String("not a table".into())],
        V::Datetime(_) => vec![V::Integer(0)],
    }
}

/// Replaces (or with `None` removes) the value at a dotted path.
fn edit(table: &mut toml::Table, path: &str, value: Option<toml::Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    match rest {
        None => {
            match value {
                Some(v) => table.insert(head.to_string(), v),
                None => table.remove(head),
            };
        }
        Some(rest) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(head) {
                edit(t, rest, value);
            }
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
