//! The App's registry: yours next to the built-ins, one name once.

mod support;

use tributary_sdk::{App, SectionConfig, SourceContext};

fn numbers(
    s: &SectionConfig,
    _: &SourceContext,
) -> Result<support::Flawed, tributary_sdk::ConfigError> {
    support::Flawed::new(s)
}

#[test]
fn your_types_join_the_built_ins_and_a_taken_name_stops_the_binary() {
    let app = App::new().source("numbers", numbers);
    let types = app.source_types();
    assert!(
        types.contains(&"numbers") && types.contains(&"generator") && types.contains(&"sql"),
        "{types:?}"
    );

    // `file` is a built-in: the binary refuses to start, whatever the command.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "name = \"c\"\n[source]\ntype = \"numbers\"\nbatch = 1\n[sink]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let code = App::new().source("file", numbers).run_from([
        "my-connector",
        "check",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code, std::process::ExitCode::from(2));
}
