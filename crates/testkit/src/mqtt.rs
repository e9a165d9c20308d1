//! Publishing to the test Mosquitto (127.0.0.1:1883, started by
//! `scripts/services`) from tests and benchmarks, waiting for the broker's
//! acknowledgement of every message, and names that keep concurrent tests
//! apart.

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 1883;

/// A topic prefix and client-id stem no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("tt-{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 user properties.
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

impl Message {
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: 1,
            retain: false,
            user_properties: Vec::new(),
            content_type: None,
        }
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Publishes every message (MQTT 5) and returns once the broker has
/// acknowledged each QoS 1/2 message. Panics with a pointer to
/// `scripts/services` if the broker is not there.
pub async fn publish(messages: &[Message]) {
    let mut options = rumqttc::v5::MqttOptions::new(unique("pub"), HOST, PORT);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(16 << 20));
    options.set_outgoing_inflight_upper_limit(1000);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 1024);
    let expected = messages.iter().filter(|m| m.qos > 0).count();
    let to_send = messages.to_vec();
    let sender = tokio::spawn(async move {
        for m in to_send {
            let props = PublishProperties {
                user_properties: m.user_properties.clone(),
                content_type: m.content_type.clone(),
                ..PublishProperties::default()
            };
            client
                .publish_with_properties(m.topic.clone(), qos(m.qos), m.retain, m.payload, props)
                .await
                .expect("queue a publish");
        }
        client
    });
    let mut acked = 0;
    let mut sent_qos0 = 0;
    let qos0 = messages.len() - expected;
    while acked < expected || sent_qos0 < qos0 {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::Event;
        use rumqttc::Outgoing;
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => acked += 1,
            Ok(Event::Outgoing(Outgoing::Publish(0))) => sent_qos0 += 1,
            Ok(_) => {}
            Err(e) => panic!(
                "publishing to the test MQTT broker {HOST}:{PORT} failed ({e}); start it with scripts/services"
            ),
        }
    }
    let client = sender.await.expect("publisher task");
    let _ = client.disconnect().await;
    // Let the DISCONNECT go out.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

/// [`publish`] from synchronous test code.
pub fn publish_blocking(messages: &[Message]) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(publish(messages));
}

/// Starts persistent session `client_id` afresh (MQTT 5, clean start,
/// kept an hour after the disconnect) subscribed to `filter` with QoS 1,
/// and disconnects: QoS 1 messages published next are queued by the
/// broker for the next client that resumes the session. What an earlier
/// client left unacknowledged in it is gone.
pub async fn fresh_session(client_id: &str, filter: &str) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::Event;
    let mut options = rumqttc::v5::MqttOptions::new(client_id, HOST, PORT);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_start(true);
    options.set_session_expiry_interval(Some(3600));
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 16);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("queue a subscribe");
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "subscribing on the test MQTT broker {HOST}:{PORT} failed ({e}); start it with scripts/services"
            ),
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}
