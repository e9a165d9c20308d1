//! The `kafka` source: one stream per topic (a list, or every topic a
//! regular expression matches when the connector starts), each read by a
//! consumer assigned all of the topic's partitions.
//!
//! - **Position.** The checkpoint holds the next offset of every partition
//!   (`{"partitions": {"0": 42, "1": 17}}`), so a stream resumes exactly
//!   where its last commit was, whatever the consumer group says. A
//!   partition the checkpoint does not know starts at the group's committed
//!   offset, else at `start` (earliest or latest).
//! - **Acknowledgement.** The group's offsets are committed in
//!   [`StreamReader::committed`](tributary_core::StreamReader::committed),
//!   i.e. only after the sink acknowledged every record before them and the
//!   checkpoint was committed: at-least-once, and consumer-lag tools see
//!   real progress.
//! - **Records.** Key: the Kafka key as JSON when it parses, else as a
//!   string. Value: the JSON document (kept as text, not parsed into a tree)
//!   or, with `format = "string"`, a JSON string. A tombstone (no value) is a
//!   `delete` with a null value. Headers: the message's own headers, then
//!   `kafka.topic`, `kafka.partition`, `kafka.offset`, `kafka.timestamp`
//!   (ms since the epoch) and `kafka.key` (the key as text).
//! - **Bad input.** A value that is not JSON (with `format = "json"`) is a
//!   bad record located as `topic/partition@offset`; the connector's
//!   `[bad_records] policy` decides.
//!
//! Manual assignment rather than group subscription: each stream reads
//! every partition of its topic itself, so there is no rebalancing to
//! coordinate with checkpoints. Several tributary processes sharing a group
//! therefore do not split a topic between them; run one connector per
//! topic set (the state store's fencing stops a second instance of it).

mod config;
mod source;

pub use config::{KafkaSourceConfig, Start, ValueFormat};
pub use source::{KafkaCheckpoint, KafkaSource};
