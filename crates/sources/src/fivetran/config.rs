//! The `[source]` table of `type = "fivetran"`.

use crate::subprocess::DEFAULT_SILENCE_TIMEOUT;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tributary_config::units::de_opt_duration;
use tributary_config::{ConfigError, SectionConfig};

/// `[source]` with `type = "fivetran"`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// The interpreter of the virtualenv the connector's requirements and
    /// `fivetran-connector-sdk` are installed in.
    #[serde(default = "default_python")]
    python: String,
    /// The connector's directory (the one holding `connector.py`), as
    /// `fivetran debug --project-path` takes it; or `connector.py` itself.
    project: PathBuf,
    /// What `configuration.json` holds, inline (secrets as `${ENV}`).
    configuration: Option<toml::Table>,
    /// A `configuration.json` file instead.
    configuration_file: Option<PathBuf>,
    /// The name of the stream the connector's one state is committed under.
    #[serde(default = "default_stream")]
    stream: String,
    /// The first part of every table's target (`{prefix}.{table}`);
    /// default: the connector's name.
    target_prefix: Option<String>,
    /// No output at all (no operation, no log line) for this long: hung;
    /// `0s` waits forever.
    #[serde(default, deserialize_with = "de_opt_duration")]
    silence_timeout: Option<Duration>,
    /// Commit a checkpoint as soon as what came before it is durable, as
    /// Fivetran does, instead of once the connector has gone past it.
    #[serde(default)]
    trust_checkpoints: bool,
    /// What `op.truncate()` does: `fail` (default) or `ignore`.
    #[serde(default)]
    truncate: Truncate,
    /// Extra environment for the connector's process.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// What an `op.truncate()` does: no sink can mark "every row synced
/// before now" deleted, so it either stops the sync or is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncate {
    #[default]
    Fail,
    Ignore,
}

fn default_python() -> String {
    "python3".into()
}

fn default_stream() -> String {
    "sync".into()
}

/// The validated settings.
#[derive(Clone)]
pub struct FivetranConfig {
    pub python: PathBuf,
    /// The connector's directory.
    pub project: PathBuf,
    /// The configuration handed to `schema()` and `update()`. Holds
    /// resolved secrets: never logged (`Debug` shows only its keys).
    pub configuration: Map<String, Value>,
    pub stream: String,
    pub target_prefix: String,
    pub silence_timeout: Option<Duration>,
    pub trust_checkpoints: bool,
    pub truncate: Truncate,
    pub env: BTreeMap<String, String>,
    /// Where the config file is: the child's relative paths start here.
    pub base_dir: PathBuf,
}

impl std::fmt::Debug for FivetranConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FivetranConfig")
            .field("python", &self.python)
            .field("project", &self.project)
            .field(
                "configuration",
                &self.configuration.keys().collect::<Vec<_>>(),
            )
            .field("stream", &self.stream)
            .field("target_prefix", &self.target_prefix)
            .field("silence_timeout", &self.silence_timeout)
            .field("trust_checkpoints", &self.trust_checkpoints)
            .field("truncate", &self.truncate)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FivetranConfig {
    pub fn from_section(section: &SectionConfig, connector: &str) -> Result<Self, ConfigError> {
        let raw: Raw = section.parse()?;
        let python = crate::subprocess::resolve_program(&raw.python, &section.base_dir)
            .map_err(|m| section.error("python", m))?;
        let mut project = section.resolve_path(&raw.project);
        if project.file_name().is_some_and(|n| n == "connector.py") && project.is_file() {
            project.pop();
        }
        if !project.join("connector.py").is_file() {
            return Err(section.error(
                "project",
                format!(
                    "{} has no connector.py: give the connector's directory (the one `fivetran debug` runs in)",
                    project.display()
                ),
            ));
        }
        let configuration = match (raw.configuration, raw.configuration_file) {
            (Some(_), Some(_)) => {
                return Err(section.error(
                    "configuration_file",
                    "give either configuration or configuration_file, not both",
                ))
            }
            (Some(inline), None) => match crate::subprocess::config_json(&inline) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            (None, Some(file)) => {
                let path = section.resolve_path(&file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    section.error(
                        "configuration_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let parsed: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                    section.error(
                        "configuration_file",
                        format!("{} is not a JSON object: {e}", path.display()),
                    )
                })?;
                // Its values did not come through `${ENV}`, which registers them.
                crate::subprocess::register_secrets(&Value::Object(parsed.clone()), false);
                parsed
            }
            (None, None) => Map::new(),
        };
        if raw.stream.trim().is_empty() {
            return Err(section.error("stream", "the stream name must not be empty"));
        }
        Ok(FivetranConfig {
            python,
            project,
            configuration,
            stream: raw.stream,
            target_prefix: raw.target_prefix.unwrap_or_else(|| connector.to_string()),
            silence_timeout: Some(raw.silence_timeout.unwrap_or(DEFAULT_SILENCE_TIMEOUT))
                .filter(|d| !d.is_zero()),
            trust_checkpoints: raw.trust_checkpoints,
            truncate: raw.truncate,
            env: raw.env,
            base_dir: section.base_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::section;

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conn")).unwrap();
        std::fs::write(dir.path().join("conn/connector.py"), "").unwrap();
        dir
    }

    #[test]
    fn defaults_and_paths_relative_to_the_config() {
        let dir = project();
        let s = section(
            "[source]\ntype = \"fivetran\"\npython = \"python3\"\nproject = \"conn\"\nconfiguration = { base_url = \"http://x\", n = 3 }\n",
            dir.path(),
        );
        let c = FivetranConfig::from_section(&s, "crm").unwrap();
        assert_eq!(c.project, dir.path().join("conn"));
        assert_eq!(c.stream, "sync");
        assert_eq!(c.target_prefix, "crm");
        assert_eq!(c.silence_timeout, Some(DEFAULT_SILENCE_TIMEOUT));
        let s = section(
            "[source]\ntype = \"fivetran\"\nproject = \"conn\"\nsilence_timeout = \"0s\"\n",
            dir.path(),
        );
        assert_eq!(
            FivetranConfig::from_section(&s, "c")
                .unwrap()
                .silence_timeout,
            None
        );
        assert!(!c.trust_checkpoints);
        assert_eq!(c.truncate, Truncate::Fail);
        assert_eq!(
            Value::Object(c.configuration.clone()),
            serde_json::json!({"base_url": "http://x", "n": 3})
        );
        // connector.py itself names its directory too.
        let s = section(
            "[source]\ntype = \"fivetran\"\nproject = \"conn/connector.py\"\n",
            dir.path(),
        );
        assert_eq!(
            FivetranConfig::from_section(&s, "crm").unwrap().project,
            dir.path().join("conn")
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let dir = project();
        let err = |text: &str| {
            FivetranConfig::from_section(&section(text, dir.path()), "c")
                .err()
                .unwrap()
        };
        let e = err("[source]\ntype = \"fivetran\"\nproject = \"elsewhere\"\n");
        assert_eq!(e.key.as_deref(), Some("source.project"));
        assert!(e.message.contains("has no connector.py"), "{e}");
        let e =
            err("[source]\ntype = \"fivetran\"\nproject = \"conn\"\npython = \"no/such/python\"\n");
        assert_eq!(e.key.as_deref(), Some("source.python"));
        let e = err("[source]\ntype = \"fivetran\"\nproject = \"conn\"\nconfiguration = {}\nconfiguration_file = \"c.json\"\n");
        assert_eq!(e.key.as_deref(), Some("source.configuration_file"));
        let e = err("[source]\ntype = \"fivetran\"\nproject = \"conn\"\nconfiguration_file = \"missing.json\"\n");
        assert!(e.message.contains("cannot read"), "{e}");
        let e = err("[source]\ntype = \"fivetran\"\nproject = \"conn\"\ntruncate = \"drop\"\n");
        assert_eq!(e.key.as_deref(), Some("source.truncate"));
        let e =
            err("[source]\ntype = \"fivetran\"\nproject = \"conn\"\nsilence_timeout = \"soon\"\n");
        assert_eq!(e.key.as_deref(), Some("source.silence_timeout"));
        let e = err("[source]\ntype = \"fivetran\"\nproject = \"conn\"\nprojekt = 1\n");
        assert!(e.message.contains("projekt"), "{e}");
    }

    #[test]
    fn a_configuration_file_registers_its_secrets_and_debug_hides_values() {
        let dir = project();
        std::fs::write(
            dir.path().join("configuration.json"),
            r#"{"bearer_token": "tok-3f9a1c77e2", "base_url": "http://api.example"}"#,
        )
        .unwrap();
        let s = section(
            "[source]\ntype = \"fivetran\"\nproject = \"conn\"\nconfiguration_file = \"configuration.json\"\n",
            dir.path(),
        );
        let c = FivetranConfig::from_section(&s, "c").unwrap();
        assert_eq!(c.configuration["bearer_token"], "tok-3f9a1c77e2");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("tok-3f9a1c77e2") && shown.contains("bearer_token"),
            "{shown}"
        );
        assert_eq!(
            tributary_core::secret::redact("sent tok-3f9a1c77e2"),
            "sent ***"
        );
    }
}
