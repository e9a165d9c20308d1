//! The TOML examples of README.md and docs/: what a user copies, read by
//! the tests that prove the binary takes them (`docs_examples`) and by the
//! config fuzzer that mutates them (`config_fuzz`).

use crate::cli::repo_root;
use std::path::PathBuf;

/// One ```toml block.
pub struct DocBlock {
    /// `docs/FILE.md:LINE` of its opening fence.
    pub at: String,
    /// Marked ```toml fragment: not a config on its own.
    pub fragment: bool,
    pub text: String,
}

/// README.md and every docs/**/*.md, sorted.
pub fn doc_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The info string of blocks that are configs for the example connector
/// binary built with the SDK (examples/sdk-connector), not for `tributary`:
/// docs/sdk.md's `json_feed` configs. That crate's tests check them with
/// its own binary; [`toml_blocks`] leaves them out.
pub const SDK_CONNECTOR_BLOCK: &str = "sdk-connector";

/// Every ```toml block of [`doc_files`] that is a `tributary` config (or
/// a fragment), in order.
pub fn toml_blocks() -> Vec<DocBlock> {
    let root = repo_root().canonicalize().unwrap();
    let mut out = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file
            .canonicalize()
            .unwrap()
            .strip_prefix(&root)
            .unwrap()
            .display()
            .to_string();
        let mut lines = text.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let Some(info) = line.strip_prefix("```toml") else {
                continue;
            };
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| !l.starts_with("```"))
                .collect();
            if info.trim() == SDK_CONNECTOR_BLOCK {
                continue;
            }
            out.push(DocBlock {
                at: format!("{rel}:{}", n + 1),
                fragment: info.trim() == "fragment",
                text: body.join("\n") + "\n",
            });
        }
    }
    out
}
