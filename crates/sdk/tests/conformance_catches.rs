//! Every conformance check passes on sources that keep their promises (the
//! full trait, the pull and the push adapters) and fails, saying why, on a
//! source that breaks the one it checks.

mod support;

use support::{flawed, pull, push};

fn message(r: Result<(), tributary_sdk::conformance::Violation>) -> String {
    r.expect_err("the check should fail on this source")
        .to_string()
}

#[tokio::test]
async fn sources_without_flaws_pass_every_check() {
    flawed("none").0.assert_all().await;
    pull("none").0.assert_all().await;
    push("none").0.assert_all().await;
}

#[tokio::test]
async fn round_trip_catches_a_checkpoint_the_source_cannot_read_back() {
    let m = message(
        flawed("checkpoint_unreadable")
            .0
            .checkpoint_round_trip()
            .await,
    );
    assert!(m.starts_with("conformance check `checkpoint_round_trip` failed: open from {\"offset\":4} failed: checkpoint {\"offset\":4} has no `position`"), "{m}");
}

#[tokio::test]
async fn restart_catches_an_inclusive_cursor_and_a_skip() {
    let m = message(
        flawed("inclusive_cursor")
            .0
            .restart_continues_exactly()
            .await,
    );
    assert!(m.contains("restarted from the checkpoint committed after 4 records ({\"offset\":4}): record 1 should be `4|"), "{m}");
    assert!(
        m.ends_with("(a record it had already given: a duplicate)"),
        "{m}"
    );
    let m = message(
        flawed("skips_on_restart")
            .0
            .restart_continues_exactly()
            .await,
    );
    assert!(
        m.ends_with("(a later record: those in between were skipped)"),
        "{m}"
    );
}

#[tokio::test]
async fn crash_resume_catches_deleting_or_acknowledging_before_the_commit() {
    let (kit, _) = flawed("deletes_on_read");
    // Exact continuation alone does not see it: what was read and
    // committed is gone, as it should be.
    kit.restart_continues_exactly().await.unwrap();
    let m = message(kit.resume_after_crash().await);
    assert!(m.contains("after a crash with 1 uncommitted batch(es), a restart from the checkpoint committed after 4 records ({\"offset\":4}) never gave `4|"), "{m}");
    assert!(m.ends_with("again: it is lost"), "{m}");

    let m = message(push("acks_on_receipt").0.resume_after_crash().await);
    assert!(m.contains("it is lost"), "{m}");
}

#[tokio::test]
async fn cancel_safety_catches_a_position_moved_before_an_await() {
    let (kit, _) = flawed("advance_before_await");
    kit.restart_continues_exactly().await.unwrap();
    let m = message(kit.cancel_safe_poll().await);
    assert!(m.starts_with("conformance check `cancel_safe_poll` failed: with polls dropped after 0 scheduler turn(s) ("), "{m}");
    assert!(m.contains(" dropped): record 1 should be `0|"), "{m}");
    assert!(
        m.contains("(a later record: those in between were skipped)"),
        "{m}"
    );
}

#[tokio::test]
async fn malformed_input_catches_panics_on_config_checkpoints_and_data() {
    let m = message(flawed("panics").0.malformed_input().await);
    assert!(m.starts_with("conformance check `malformed_input` failed: the config with `source.batch` removed panicked the constructor"), "{m}");

    let m = message(flawed("panics_on_checkpoint").0.malformed_input().await);
    assert!(
        m.starts_with(
            "conformance check `malformed_input` failed: opening from the checkpoint null panicked"
        ),
        "{m}"
    );

    let m = message(flawed("panics_on_data").0.malformed_input().await);
    assert!(m.starts_with("conformance check `malformed_input` failed: reading the malformed upstream `every fifth item is not JSON` panicked"), "{m}");

    let m = message(flawed("silent").0.malformed_input().await);
    assert!(m.ends_with("the malformed upstream `every fifth item is not JSON` was read without an error or a bad record: bad input passed silently"), "{m}");
}

#[tokio::test]
async fn side_effects_of_check_are_caught_by_the_snapshot_and_by_the_data() {
    let m = message(flawed("check_writes").0.no_side_effects().await);
    assert_eq!(m, "conformance check `no_side_effects` failed: check/discover changed the upstream: before \"writes=0 removed={}\", after \"writes=1 removed={}\"");
    let m = message(flawed("check_consumes").0.no_side_effects().await);
    assert!(m.contains("check/discover changed the upstream: before \"writes=0 removed={}\", after \"writes=0 removed={0}\""), "{m}");
    // Without an observer, the read after check is short of its first record.
    let m = message(
        support::unobserved("check_consumes")
            .no_side_effects()
            .await,
    );
    assert!(m.starts_with("conformance check `no_side_effects` failed: a read after check and discover differs from one without them: record 1 should be `0|"), "{m}");
}

#[tokio::test]
async fn a_stream_too_short_to_prove_anything_is_refused() {
    let (kit, _) = support::flawed_with("none", 3, 4, 0);
    let m = message(kit.restart_continues_exactly().await);
    assert!(m.ends_with("the stream gave 1 batch(es) with records; the checks need at least 2 (more data, or a smaller batch size)"), "{m}");
}

#[tokio::test]
async fn a_waived_check_is_left_out_by_name_and_needs_a_reason() {
    use tributary_sdk::conformance::Check;
    let kit = flawed("skips_on_restart").0;
    let failed: Vec<&'static str> = kit
        .run_all()
        .await
        .expect_err("the flaw fails a check")
        .iter()
        .map(|v| v.check)
        .collect();
    assert!(failed.contains(&"restart_continues_exactly"), "{failed:?}");
    // Waiving exactly what fails: the rest still runs and passes, and the
    // waivers are listed with their reasons.
    let mut waiving = kit.clone();
    for check in Check::ALL {
        if failed.contains(&check.name()) {
            waiving = waiving.without(check, "this test's source skips on purpose");
        }
    }
    waiving.run_all().await.unwrap();
    assert_eq!(waiving.waived().len(), failed.len());
    assert!(
        waiving
            .waived()
            .iter()
            .all(|(c, why)| failed.contains(&c.name())
                && why == "this test's source skips on purpose")
    );
    // Called directly, a waived check still runs.
    assert!(waiving.restart_continues_exactly().await.is_err());
    // A waiver needs a reason.
    let m = flawed("none")
        .0
        .without(Check::CancelSafePoll, " ")
        .run_all()
        .await
        .unwrap_err();
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].to_string(),
        "conformance check `cancel_safe_poll` failed: waived by `Kit::without` with an empty reason: say why the check cannot apply to this source"
    );
}
