//! The release tarball: `scripts/release --binary` packages the binary the
//! tests built, and the quickstart runs from the unpacked tarball alone, in
//! an empty directory, with nothing of the source tree on hand.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tributary_testkit::cli::*;

/// Lines in the file sink's files of `target` under `dir`.
fn lines(dir: &Path, target: &str) -> usize {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{target}-")) && n.ends_with(".ndjson"))
        })
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum()
}

#[test]
fn the_release_tarball_runs_the_quickstart_on_its_own() {
    let dist = tempfile::tempdir().unwrap();
    let o = Command::new(repo_root().join("scripts/release"))
        .args(["--binary", env!("CARGO_BIN_EXE_tributary"), "--out"])
        .arg(dist.path())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let name = format!(
        "tributary-{}-{}-linux",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    let tarball = dist.path().join(format!("{name}.tar.gz"));
    assert_eq!(stdout(&o).trim(), tarball.to_str().unwrap());
    let sums = Command::new("sha256sum")
        .args(["-c", &format!("{name}.tar.gz.sha256")])
        .current_dir(dist.path())
        .output()
        .unwrap();
    assert_exit(&sums, 0);

    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    assert_exit(&listed, 0);
    let listed = stdout(&listed);
    for entry in [
        "tributary",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "docs/install.md",
        "examples/quickstart.toml",
        "examples/files.toml",
        "examples/data/orders.csv",
    ] {
        assert!(
            listed.lines().any(|l| l == format!("{name}/{entry}")),
            "{entry} missing from the tarball:\n{listed}"
        );
    }
    assert!(
        listed.lines().all(|l| l.starts_with(&format!("{name}/"))),
        "{listed}"
    );
    assert!(
        !listed.contains(".tributary"),
        "local state packaged:\n{listed}"
    );

    // Unpacked somewhere else, run with a bare environment.
    let home = tempfile::tempdir().unwrap();
    let o = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .current_dir(home.path())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    drop(dist);
    let root = home.path().join(&name);
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    let run = || {
        let child = Command::new(root.join("tributary"))
            .args(["run", "examples/quickstart.toml", "--no-progress"])
            .current_dir(&root)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, Duration::from_secs(120))
    };
    let o = run();
    assert_exit(&o, 0);
    let out = root.join("out/quickstart");
    let counted = || {
        (
            lines(&out, "quickstart.users"),
            lines(&out, "quickstart.orders"),
        )
    };
    assert_eq!(counted(), (10_000, 10_000));
    // Again: it resumes from its checkpoints and adds nothing.
    let o = run();
    assert_exit(&o, 0);
    assert_eq!(counted(), (10_000, 10_000));
    assert!(root.join("examples/.tributary").is_dir());
    let o = Command::new(root.join("tributary"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&o).trim(),
        format!("tributary {}", env!("CARGO_PKG_VERSION"))
    );
}
