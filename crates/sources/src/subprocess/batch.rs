//! Turning a child's messages into batches whose checkpoint is safe to commit.

use serde_json::Value;
use tributary_core::{BadRecord, Record};

/// When a state message the child sent may be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePolicy {
    /// Once the child sent the next state, or exited with status 0. A tap
    /// that (against its protocol) sends a state *before* the records it
    /// covers loses nothing: those records arrive before the next state,
    /// in the batch that commits it. The cost is that a crash re-reads one
    /// more state interval.
    AfterNext,
    /// At once: for protocols where a checkpoint call, by definition,
    /// follows every record it covers (Fivetran's `op.checkpoint`).
    Immediate,
}

/// What a bridge read since its last batch: records, bad records, and the
/// state a batch made now may carry.
#[derive(Debug)]
pub struct Pending {
    policy: StatePolicy,
    records: Vec<Record>,
    bad: Vec<BadRecord>,
    /// The newest state that may be committed (the checkpoint the reader
    /// was opened at, until a state is confirmed).
    confirmed: Value,
    /// A state sent but not yet confirmed ([`StatePolicy::AfterNext`]).
    unconfirmed: Option<Value>,
    moved: bool,
}

impl Pending {
    pub fn new(initial: Value, policy: StatePolicy) -> Self {
        Pending {
            policy,
            records: Vec::new(),
            bad: Vec::new(),
            confirmed: initial,
            unconfirmed: None,
            moved: false,
        }
    }

    pub fn record(&mut self, record: Record) {
        self.records.push(record);
    }

    pub fn bad(&mut self, bad: BadRecord) {
        self.bad.push(bad);
    }

    /// The child sent `state`.
    pub fn state(&mut self, state: Value) {
        match self.policy {
            StatePolicy::Immediate => {
                self.confirmed = state;
                self.moved = true;
            }
            StatePolicy::AfterNext => {
                if let Some(previous) = self.unconfirmed.replace(state) {
                    self.confirmed = previous;
                    self.moved = true;
                }
            }
        }
    }

    /// The child exited with status 0: everything it sent stands.
    pub fn finished(&mut self) {
        if let Some(last) = self.unconfirmed.take() {
            self.confirmed = last;
            self.moved = true;
        }
    }

    /// The run is over and the next starts from `state` whatever the
    /// child sent (an Airbyte full refresh that completed starts over).
    pub fn reset(&mut self, state: Value) {
        self.unconfirmed = None;
        self.confirmed = state;
        self.moved = true;
    }

    /// Whether a batch should be handed to the runtime now: it is full, or
    /// a state was confirmed (committing it promptly bounds the re-reading
    /// after a crash).
    pub fn ready(&self, batch_size: usize) -> bool {
        self.len() >= batch_size || self.moved
    }

    pub fn len(&self) -> usize {
        self.records.len() + self.bad.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a batch would carry anything: records, or a state that moved.
    pub fn has_news(&self) -> bool {
        !self.is_empty() || self.moved
    }

    /// The records and bad records so far, and the state they may commit.
    pub fn take(&mut self) -> (Vec<Record>, Vec<BadRecord>, Value) {
        self.moved = false;
        (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.bad),
            self.confirmed.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_state_is_committed_only_after_the_next_one_or_a_clean_exit() {
        let mut p = Pending::new(json!(null), StatePolicy::AfterNext);
        p.state(json!({"at": 10}));
        p.record(Record::new(json!({"id": 1})));
        assert!(!p.ready(100), "the first state is not confirmed yet");
        p.state(json!({"at": 20}));
        assert!(p.ready(100));
        let (records, _, state) = p.take();
        assert_eq!(records.len(), 1);
        // The record sent after state 10 travels with it: a tap that sends
        // states early loses nothing.
        assert_eq!(state, json!({"at": 10}));
        p.record(Record::new(json!({"id": 2})));
        p.finished();
        let (records, _, state) = p.take();
        assert_eq!(records.len(), 1);
        assert_eq!(state, json!({"at": 20}));
        assert!(p.is_empty());
    }

    #[test]
    fn immediate_states_commit_at_once_and_full_batches_keep_the_last_state() {
        let mut p = Pending::new(json!({"at": 0}), StatePolicy::Immediate);
        p.record(Record::new(json!({"id": 1})));
        p.record(Record::new(json!({"id": 2})));
        assert!(p.ready(2));
        assert_eq!(p.take().2, json!({"at": 0}));
        p.state(json!({"at": 5}));
        assert!(p.ready(100));
        assert_eq!(p.take().2, json!({"at": 5}));
    }
}
