//! `type = "mqtt"`: messages from an MQTT broker (3.1.1 or 5), seed 003's
//! MQTT source with its `topic_mappings`.
//!
//! ```toml
//! [source]
//! type = "mqtt"
//! url = "mqtts://broker.example.com:8883"   # mqtt:// (1883) or mqtts:// (8883)
//! protocol = "5"                            # "5" (default) | "3.1.1"
//! client_id = "tributary-plant-7"           # stable: the broker keeps the session under it
//! username = "ingest"
//! password = "${MQTT_PASSWORD}"
//! format = "json"                           # json | text
//! [[source.topic_mappings]]
//! source_pattern = "plant/+/temperature"    # + one level, # the rest
//! target = "iot.temperature"
//! qos = 1
//! ```
//!
//! **Delivery.** A persistent session (`clean_session = false`, the
//! default; MQTT 5: clean start off and a session expiry) with QoS 1 or 2:
//! the broker keeps every message until it is acknowledged, including
//! those published while tributary is down. rumqttc runs with manual
//! acknowledgements, and a message is acknowledged only in
//! [`StreamReader::committed`](tributary_core::StreamReader::committed),
//! after the sink made it durable and its checkpoint was committed. A
//! crash at any instant therefore loses nothing; the broker re-delivers
//! the messages after the last commit (duplicates bounded by one flush).
//!
//! **Headers.** `mqtt_topic`, `mqtt_qos`, `mqtt_retain`, and with MQTT 5
//! `mqtt_content_type` and every user property under its own name.
//!
//! **Bad input** (invalid JSON, a JSON value that is not an object,
//! non-UTF-8 text) becomes a [`BadRecord`](tributary_core::BadRecord)
//! located `URL topic TOPIC`; it is acknowledged like any other message
//! once the batch carrying it is committed.

mod client;
mod config;
mod source;
mod topic;

pub use config::{MqttConfig, Protocol, TlsConfig, TopicMapping};
pub use source::{MqttCheckpoint, MqttReader, MqttSource};
