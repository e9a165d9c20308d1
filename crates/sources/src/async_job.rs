//! What every async-job source shares: sources that create a job on the
//! outside system (a Stripe report run, an export, a bulk query), wait for
//! it and read its result. The job id is committed before any waiting, so
//! a timeout or a crash resumes the same job; this module keeps the rest of
//! "never wedged" in the checkpoint, the same way for every such source:
//!
//! - **Abandoned means abandoned.** A job the stream gave up on (it failed,
//!   its result expired, an operator reset the stream away from it) is
//!   listed in `abandoned_runs` and never adopted again.
//! - **Idempotent creates.** A job is created with an idempotency key
//!   derived from (connector, stream, interval, attempt): a crash between
//!   creating it and committing its id creates it again with the same key
//!   and gets the same job back, never another one with the same
//!   parameters; giving up a job moves to the next attempt, so its key (and
//!   its job) is never handed out again.
//! - **Bounded attempts.** Failed and abandoned jobs count; after
//!   `max_failures` in a row the stream is marked stuck with the reason
//!   (`stuck_reason`) instead of creating jobs forever.
//!
//! The ledger's fields are top-level checkpoint keys listed in
//! [`tributary_core::checkpoint::ATTEMPT_KEYS`]: recording an attempt is
//! not progress, so it resets no retry budget and keeps no stream fresh.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Abandoned jobs a checkpoint remembers; older ones are dropped (their
/// idempotency keys have expired by then on any API that keeps them a day).
pub const MAX_ABANDONED: usize = 20;

/// The longest idempotency key: Stripe accepts up to 255 characters.
const MAX_KEY: usize = 255;

/// A stream's attempts at its current interval; flattened into the
/// source's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobLedger {
    /// Attempts given up at the current interval: part of the next job's
    /// idempotency key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// Failed or abandoned jobs (or refused requests) since the last
    /// delivered interval.
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// See [`tributary_core::Checkpoint::stuck_reason`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_reason: Option<String>,
    /// Jobs given up on, newest last; never adopted again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abandoned_runs: Vec<AbandonedJob>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonedJob {
    pub id: String,
    pub reason: String,
}

/// What to do after giving up a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Create the next attempt, after this many failures in a row.
    Retry { failures: u32 },
    /// Stop trying until the next scheduled run: the stream is stuck.
    Stuck { reason: String },
}

impl JobLedger {
    /// The idempotency key of the next job for `[start, end)`: the same
    /// until that attempt is given up, then never again.
    pub fn idempotency_key(
        &self,
        connector: &str,
        stream: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> String {
        let tail = format!(
            "/{}-{}/{}",
            start.timestamp(),
            end.timestamp(),
            self.attempt
        );
        let mut head = format!("tributary/{connector}/{stream}");
        // Long names lose their beginning, never the interval or attempt.
        while head.len() + tail.len() > MAX_KEY {
            head.remove(0);
        }
        head + &tail
    }

    pub fn is_abandoned(&self, id: &str) -> bool {
        self.abandoned_runs.iter().any(|a| a.id == id)
    }

    /// Gives up job `id` for `reason` (it failed, its result is gone, an
    /// operator moved the stream): it is never adopted again, and the next
    /// job gets a new key. Counts as a failure toward `max_failures`.
    pub fn abandon(&mut self, id: &str, reason: &str, max_failures: u32) -> Verdict {
        self.forget(id, reason);
        self.consecutive_failures += 1;
        let last = format!("{id}: {reason}");
        self.last_error = Some(last.clone());
        let n = self.consecutive_failures;
        if n >= max_failures.max(1) {
            let reason = format!("{n} attempts in a row gave up; last: {last}");
            self.stuck_reason = Some(reason.clone());
            return Verdict::Stuck { reason };
        }
        if let Some(reason) = &self.stuck_reason {
            // Already stuck: one attempt per scheduled run.
            return Verdict::Stuck {
                reason: reason.clone(),
            };
        }
        Verdict::Retry { failures: n }
    }

    /// Records `id` as abandoned and moves to the next attempt, without
    /// counting a failure (an operator's reset).
    pub fn forget(&mut self, id: &str, reason: &str) {
        if !self.is_abandoned(id) {
            self.abandoned_runs.push(AbandonedJob {
                id: id.to_string(),
                reason: reason.to_string(),
            });
            let excess = self.abandoned_runs.len().saturating_sub(MAX_ABANDONED);
            self.abandoned_runs.drain(..excess);
        }
        self.attempt += 1;
    }

    /// The outside system refused a request it will refuse again (a bad
    /// parameter, a host we do not send the key to): stuck at once.
    pub fn refuse(&mut self, reason: String) -> String {
        self.consecutive_failures += 1;
        self.last_error = Some(reason.clone());
        let stuck = format!("refused; fix the configuration and reset the stream ({reason})");
        self.stuck_reason = Some(stuck.clone());
        stuck
    }

    /// The interval was delivered: the next one starts with a clean slate.
    /// Abandoned jobs stay listed, so a reset back to this interval never
    /// adopts one of them.
    pub fn delivered(&mut self) {
        self.attempt = 0;
        self.consecutive_failures = 0;
        self.last_error = None;
        self.stuck_reason = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_abandoned_job_gets_a_new_key_and_attempts_are_bounded() {
        let mut l = JobLedger::default();
        let (a, b) = (t("2024-01-01T00:00:00Z"), t("2024-01-02T00:00:00Z"));
        let first = l.idempotency_key("billing", "balance.summary.1.UTC", a, b);
        assert_eq!(
            first,
            "tributary/billing/balance.summary.1.UTC/1704067200-1704153600/0"
        );
        assert_eq!(
            l.idempotency_key("billing", "balance.summary.1.UTC", a, b),
            first
        );
        assert_eq!(
            l.abandon("frr_1", "file expired", 3),
            Verdict::Retry { failures: 1 }
        );
        assert!(l.is_abandoned("frr_1"));
        assert_ne!(
            l.idempotency_key("billing", "balance.summary.1.UTC", a, b),
            first
        );
        l.abandon("frr_2", "file expired", 3);
        let Verdict::Stuck { reason } = l.abandon("frr_3", "file expired", 3) else {
            panic!("not stuck")
        };
        assert_eq!(
            reason,
            "3 attempts in a row gave up; last: frr_3: file expired"
        );
        // A new interval starts clean but remembers what was abandoned.
        l.delivered();
        assert_eq!(
            (l.attempt, l.consecutive_failures, l.stuck_reason.clone()),
            (0, 0, None)
        );
        assert!(l.is_abandoned("frr_2"));
        let long = "x".repeat(400);
        assert_eq!(l.idempotency_key(&long, "s", a, b).len(), MAX_KEY);
        assert!(l
            .idempotency_key(&long, "s", a, b)
            .ends_with("/1704067200-1704153600/0"));
        for i in 0..30 {
            l.forget(&format!("frr_x{i}"), "reset");
        }
        assert_eq!(l.abandoned_runs.len(), MAX_ABANDONED);
        assert!(l.is_abandoned("frr_x29") && !l.is_abandoned("frr_1"));
    }
}
