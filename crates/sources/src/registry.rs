//! The one list of source types a binary knows: `type` name → constructor
//! (and an optional defaults hook). The `tributary` binary starts from
//! [`builtin`](crate::builtin); a binary built with the SDK adds its own
//! types to the same registry, so every command (`check`, `run`, the admin
//! server's plugin list, `did you mean`) sees one set of names.

use crate::SourceContext;
use std::collections::BTreeMap;
use std::sync::Arc;
use tributary_config::{ConfigError, ConnectorConfig, SectionConfig};
use tributary_core::Source;

/// Builds a source from its `[source]` section. Only configuration is
/// validated here (no I/O), so `tributary check` can report every config
/// error before touching the outside world; connectivity is
/// [`Source::check`]'s job.
pub type BuildFn =
    dyn Fn(&SectionConfig, &SourceContext) -> Result<Box<dyn Source>, ConfigError> + Send + Sync;

/// Fills in what a source type defaults outside its `[source]` table
/// (schedule, metadata names) when the file leaves it unset; runs before
/// the source and the runtime are built.
pub type DefaultsFn = fn(&mut ConnectorConfig) -> Result<(), ConfigError>;

/// One registered `type`.
#[derive(Clone)]
pub struct SourceType {
    name: String,
    build: Arc<BuildFn>,
    defaults: Option<DefaultsFn>,
}

impl SourceType {
    /// `ctor` is the source's `from_section`: it types the section with the
    /// source's own serde struct ([`SectionConfig::parse`] gives the file,
    /// key and line of every mistake).
    pub fn new<S, F>(name: impl Into<String>, ctor: F) -> Self
    where
        S: Source + 'static,
        F: Fn(&SectionConfig, &SourceContext) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        SourceType {
            name: name.into(),
            build: Arc::new(
                move |section: &SectionConfig,
                      ctx: &SourceContext|
                      -> Result<Box<dyn Source>, ConfigError> {
                    Ok(Box::new(ctor(section, ctx)?))
                },
            ),
            defaults: None,
        }
    }

    /// A type whose constructor already boxes (adapters over simpler traits).
    pub fn boxed<F>(name: impl Into<String>, build: F) -> Self
    where
        F: Fn(&SectionConfig, &SourceContext) -> Result<Box<dyn Source>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        SourceType {
            name: name.into(),
            build: Arc::new(build),
            defaults: None,
        }
    }

    /// Adds the type's defaults hook (see [`DefaultsFn`]).
    pub fn defaults(mut self, hook: DefaultsFn) -> Self {
        self.defaults = Some(hook);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Builds the source, as the registry would for a section of this type.
    pub fn build(
        &self,
        section: &SectionConfig,
        ctx: &SourceContext,
    ) -> Result<Box<dyn Source>, ConfigError> {
        (self.build)(section, ctx)
    }

    /// Runs the type's defaults hook, if it has one.
    pub fn apply_defaults(&self, config: &mut ConnectorConfig) -> Result<(), ConfigError> {
        self.defaults.map_or(Ok(()), |hook| hook(config))
    }
}

impl std::fmt::Debug for SourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceType")
            .field("name", &self.name)
            .field("defaults", &self.defaults.is_some())
            .finish()
    }
}

/// Registering a `type` name twice: a programming mistake of the binary,
/// reported before any command runs rather than letting one silently win.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source type `{0}` is registered twice; each type name must be unique in one binary")]
pub struct DuplicateType(pub String);

/// Every source type of one binary, by name.
#[derive(Debug, Clone, Default)]
pub struct SourceRegistry {
    types: BTreeMap<String, SourceType>,
}

impl SourceRegistry {
    /// A registry with no types (see [`crate::builtin`] for ours).
    pub fn new() -> Self {
        SourceRegistry::default()
    }

    /// Adds a type; a name already taken is refused.
    pub fn register(&mut self, source: SourceType) -> Result<(), DuplicateType> {
        if self.types.contains_key(&source.name) {
            return Err(DuplicateType(source.name));
        }
        self.types.insert(source.name.clone(), source);
        Ok(())
    }

    /// Every `type` name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    /// One registered type (the conformance kit builds a source from it).
    pub fn get(&self, name: &str) -> Option<&SourceType> {
        self.types.get(name)
    }

    /// Builds the source a `[source]` section describes; an unknown `type`
    /// names the known ones and the closest.
    pub fn build(
        &self,
        section: &SectionConfig,
        ctx: &SourceContext,
    ) -> Result<Box<dyn Source>, ConfigError> {
        match self.types.get(&section.kind) {
            Some(t) => t.build(section, ctx),
            None => Err(section.unknown_type(&self.names())),
        }
    }

    /// Runs the source type's defaults hook, if it has one.
    pub fn apply_defaults(&self, config: &mut ConnectorConfig) -> Result<(), ConfigError> {
        match self.types.get(&config.source.kind) {
            Some(t) => t.apply_defaults(config),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_registered_twice_is_refused() {
        let mut r = crate::builtin();
        let again = SourceType::new("file", crate::file::FileSource::from_section);
        assert_eq!(
            r.register(again).unwrap_err().to_string(),
            "source type `file` is registered twice; each type name must be unique in one binary"
        );
        assert!(r.names().contains(&"generator"));
    }
}
