//! Time as the scheduler and the sources see it. Injectable so cron
//! schedules (DST changes included) and API windows ("from the last run to
//! now") are tested by moving a clock, never by sleeping.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::sync::watch;

#[async_trait::async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
    /// Returns once `now() >= deadline`.
    async fn sleep_until(&self, deadline: DateTime<Utc>);
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        // Sleep in slices of at most a minute and re-read the wall clock, so a
        // suspended laptop or an NTP step does not make a cron run late by hours.
        loop {
            let left = deadline - Utc::now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
        }
    }
}

/// The wall clock moved by a fixed offset: time flows normally but starts at
/// another instant. Lets an end-to-end test run the real binary "three days
/// later" (`TRIBUTARY_CLOCK_START`) without sleeping.
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    offset: chrono::Duration,
}

impl ShiftedClock {
    /// A clock whose `now()` is `start` at the moment of this call.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        ShiftedClock {
            offset: start - Utc::now(),
        }
    }
}

#[async_trait::async_trait]
impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        SystemClock.sleep_until(deadline - self.offset).await
    }
}

/// A clock that only moves when a test moves it.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    tick: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
            tick: watch::channel(start).0,
        }
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
        self.tick.send_replace(t);
    }

    pub fn advance(&self, d: chrono::Duration) {
        let t = self.now() + d;
        self.set(t);
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let mut rx = self.tick.subscribe();
        // `wait_for` checks the current value first, so a move that happened
        // before we subscribed is not missed.
        let _ = rx.wait_for(|t| *t >= deadline).await;
    }
}
