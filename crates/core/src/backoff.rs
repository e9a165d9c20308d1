//! Exponential backoff shared by the runtime's retries and the push sources'
//! reconnects (which own their connection and so their reconnect loop).

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with "equal jitter": half the delay is fixed, half random,
/// so retries from many streams spread out but never retry immediately.
/// The wait before retry number `attempt` (1-based).
pub fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let half = capped / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(5);
        for _ in 0..100 {
            let d1 = delay(1, i, m);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d4 = delay(4, i, m);
            assert!(d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800));
            let d30 = delay(30, i, m);
            assert!(d30 >= Duration::from_millis(2500) && d30 <= m);
        }
    }
}
