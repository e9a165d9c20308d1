//! PLACEHOLDER: the redb-backed embedded store is being written.
pub struct EmbeddedStore;
