//! Unit tests of the stripe_reporting source against the simulator.

use super::*;
use crate::test_support::section;
use crate::SourceContext;
use chrono::{DateTime, Utc};
use serde_json::json;
use tributary_core::{Checkpoint, ResetPosition, RunProgress, Source, StreamSpec};
use tributary_testkit::sim::StripeSim;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn source(sim: &StripeSim) -> StripeReportingSource {
    let text = format!(
        "[source]\ntype = \"stripe_reporting\"\napi_key = \"sk_test_unit_123456\"\nbase_url = \"{b}\"\nfiles_url = \"{b}\"\nreport_types = [\"balance.summary.1\"]\ntimezones = [\"America/New_York\"]\n",
        b = sim.base_url()
    );
    let s = section(&text, std::path::Path::new("/tmp"));
    StripeReportingSource::from_section(&s, &SourceContext::new("c", 100)).unwrap()
}

#[test]
fn names_and_times() {
    assert_eq!(
        stream_name("balance.summary.1", "America/New_York"),
        "balance.summary.1.America_New_York"
    );
    assert_eq!(parse_instant("2024-01-02"), Some(t("2024-01-02T00:00:00Z")));
    assert_eq!(
        parse_instant("2024-01-02T05:00:00+01:00"),
        Some(t("2024-01-02T04:00:00Z"))
    );
    assert_eq!(parse_instant("yesterday"), None);
}

#[tokio::test]
async fn reset_targets_and_run_progress() {
    let sim = StripeSim::start("sk_test_unit_123456").await;
    sim.set_report_type(
        "balance.summary.1",
        t("2024-01-01T00:00:00Z"),
        t("2024-02-01T00:00:00Z"),
    );
    let src = source(&sim).await;
    let spec = StreamSpec::new("balance.summary.1.America_New_York");
    let current = Checkpoint(json!({
        "report_type": "balance.summary.1", "timezone": "America/New_York",
        "interval_start": "2023-06-01T00:00:00Z", "interval_end": "2023-06-02T00:00:00Z",
        "round_id": 7, "in_progress_report_run_id": "frr_1", "consecutive_failures": 5,
        "stuck_reason": "5 report runs failed in a row", "last_round_at": "2023-06-02T00:00:00Z"
    }));
    assert_eq!(src.run_progress(&spec, &current), RunProgress::InProgress);
    let moved = src
        .checkpoint_at(&spec, Some(&current), ResetPosition::AvailableEnd)
        .await
        .unwrap();
    assert_eq!(
        moved.0,
        json!({
            "report_type": "balance.summary.1", "timezone": "America/New_York",
            "interval_start": "2024-02-01T00:00:00Z", "interval_end": "2024-02-01T00:00:00Z",
            "round_id": 7, "rows_emitted": 0, "consecutive_failures": 0,
            "last_round_at": "2023-06-02T00:00:00Z",
            // The run in flight is given up for good: a reset never adopts it again.
            "attempt": 1,
            "abandoned_runs": [{"id": "frr_1", "reason": "abandoned by `state reset` (--to-available-end)"}]
        })
    );
    assert_eq!(moved.stuck_reason(), None);
    assert_eq!(
        src.run_progress(&spec, &moved),
        RunProgress::CompletedAt(t("2023-06-02T00:00:00Z"))
    );
    let at = src
        .checkpoint_at(&spec, None, ResetPosition::At(t("2024-01-10T10:00:00.5Z")))
        .await
        .unwrap();
    assert_eq!(at.0["interval_start"], "2024-01-10T10:00:00Z");
    assert_eq!(at.0["round_id"], 0);
    let err = src
        .checkpoint_at(&StreamSpec::new("nope"), None, ResetPosition::Now)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no stream `nope`"), "{err}");
}
