//! The files a child reads its config, catalog and state from.

use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use tributary_core::ConnectorError;

/// Names start with this and our pid, so files a killed tributary left
/// behind can be recognised and removed by the next one.
const PREFIX: &str = "tributary-bridge-";

/// A JSON file readable only by us (mode 0600: a config holds resolved
/// secrets), removed when dropped. The child is handed its path; its
/// contents are never logged.
#[derive(Debug)]
pub struct JsonFile {
    file: tempfile::NamedTempFile,
}

impl JsonFile {
    /// Writes `value` to a new file named `tributary-bridge-PID-KIND-*.json`
    /// in the temporary directory.
    pub fn write(kind: &str, value: &Value) -> Result<JsonFile, ConnectorError> {
        let dir = std::env::temp_dir();
        sweep_stale(&dir);
        let failed = |e: std::io::Error| {
            ConnectorError::from_io(&format!("writing the {kind} file for the child"), &e)
        };
        // tempfile creates the file with mode 0600.
        let mut file = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-{kind}-", std::process::id()))
            .suffix(".json")
            .tempfile_in(&dir)
            .map_err(failed)?;
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        file.write_all(&bytes).map_err(failed)?;
        file.flush().map_err(failed)?;
        Ok(JsonFile { file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Removes bridge files whose tributary process is gone (killed with `kill -9`,
/// it could not remove them itself). Best effort: a failure leaves a file
/// the next sweep tries again.
fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_removed_on_drop() {
        let f = JsonFile::write("config", &serde_json::json!({"password": "p"})).unwrap();
        let path = f.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, r#"{"password":"p"}"#);
        drop(f);
        assert!(!path.exists());
    }

    #[test]
    fn files_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194305 (above Linux's pid_max limit).
        let stale = dir.path().join(format!("{PREFIX}4194305-config-x.json"));
        let ours = dir
            .path()
            .join(format!("{PREFIX}{}-config-y.json", std::process::id()));
        let other = dir.path().join("unrelated.json");
        for p in [&stale, &ours, &other] {
            std::fs::write(p, "{}").unwrap();
        }
        sweep_stale(dir.path());
        assert!(!stale.exists());
        assert!(ours.exists());
        assert!(other.exists());
    }
}
