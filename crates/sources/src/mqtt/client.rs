//! The task that drives rumqttc's event loop (MQTT 3.1.1 or 5): it
//! subscribes after every connect that has no stored session, turns each
//! PUBLISH into a record, and reconnects with backoff. Acknowledgements are
//! sent by the reader, through the [`Client`], after the commit.
//!
//! Every connection gets a new generation number, and so does every loss.
//! A message is acknowledged only if it arrived on the current connection:
//! after a reconnect the broker re-sends the unacknowledged messages of a
//! persistent session (with the same packet ids), and an acknowledgement
//! from the old connection could otherwise release a different message
//! that reused the id.

use super::config::{Protocol, Settings, TlsSettings};
use crate::push::bad_record;
use rumqttc::v5::mqttbytes::v5 as v5b;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn};
use tributary_core::{ConnectorError, Headers};

/// What the driver hands to the reader.
// The large variant is the one every message takes; boxing it would
// allocate per message for the sake of the rare `Failed`.
#[allow(clippy::large_enum_variant)]
/// A message, with what to acknowledge once it is committed (QoS 1/2) and
/// the connection it came on.
pub(crate) type Event = crate::push::PushEvent<Option<(u64, Delivery)>>;

/// A received PUBLISH, kept for its acknowledgement.
pub(crate) enum Delivery {
    V4(rumqttc::Publish),
    V5(v5b::Publish),
}

/// The handle acknowledgements and the final DISCONNECT go through.
#[derive(Clone)]
pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    /// Queues the acknowledgement (PUBACK, or PUBREC for QoS 2). Never
    /// blocks: the request channel holds more than the broker can have
    /// unacknowledged (see `request_capacity`).
    pub fn ack(&self, delivery: &Delivery) -> Result<(), String> {
        match (self, delivery) {
            (Client::V4(c), Delivery::V4(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            (Client::V5(c), Delivery::V5(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            _ => Err("acknowledgement for another protocol version".into()),
        }
    }

    /// Queues an UNSUBSCRIBE from `filter`, a filter nobody subscribed
    /// to (so it changes nothing). The broker handles a connection's
    /// packets in order, so its UNSUBACK proves every acknowledgement
    /// queued before it was received and processed, which a socket write
    /// does not (a connection reset discards what the broker had not read).
    pub fn barrier(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c.try_unsubscribe(filter).map_err(|e| e.to_string()),
            Client::V5(c) => c.try_unsubscribe(filter).map_err(|e| e.to_string()),
        }
    }

    /// A clean DISCONNECT; the broker keeps a persistent session.
    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

/// The generation of the current connection (see the module docs), and
/// how many UNSUBACKs the broker has sent (the barrier of
/// [`Client::barrier`]).
#[derive(Debug, Default)]
pub(crate) struct Link {
    generation: AtomicU64,
    connected: AtomicBool,
    unsubacks: AtomicU64,
    /// Woken on an UNSUBACK or a connection change.
    changed: tokio::sync::Notify,
}

impl Link {
    /// UNSUBACKs received so far.
    pub fn unsubacks(&self) -> u64 {
        self.unsubacks.load(Ordering::Acquire)
    }

    fn unsuback(&self) {
        self.unsubacks.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Resolves on the next UNSUBACK or connection change after it was
    /// created.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub fn current(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Between a CONNACK and the next loss.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn next(&self, connected: bool) -> u64 {
        self.connected.store(connected, Ordering::Release);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed.notify_waiters();
        generation
    }
}

/// More than the broker may have unacknowledged (packet ids are 16 bits),
/// so queuing every pending acknowledgement at once never blocks.
fn request_capacity() -> usize {
    usize::from(u16::MAX) + 1024
}

fn tls_connector(tls: &TlsSettings) -> Result<native_tls::TlsConnector, String> {
    let mut b = native_tls::TlsConnector::builder();
    if let Some(pem) = &tls.ca_pem {
        b.add_root_certificate(native_tls::Certificate::from_pem(pem).map_err(|e| e.to_string())?);
    }
    if let Some((cert, key)) = &tls.identity {
        b.identity(native_tls::Identity::from_pkcs8(cert, key).map_err(|e| e.to_string())?);
    }
    b.danger_accept_invalid_certs(tls.accept_invalid_certs);
    b.build().map_err(|e| e.to_string())
}

/// Starts the driver task; returns the client for acknowledgements.
pub(crate) fn start(
    settings: Arc<Settings>,
    link: Arc<Link>,
    tx: mpsc::Sender<Event>,
) -> Result<(Client, tokio::task::JoinHandle<()>), ConnectorError> {
    let transport = match &settings.tls {
        Some(tls) => Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::NativeConnector(
                tls_connector(tls)
                    .map_err(|e| ConnectorError::config(format!("mqtt TLS settings: {e}")))?,
            ),
        )),
        None => None,
    };
    let s = &settings;
    match s.protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
            o.set_keep_alive(s.keep_alive)
                .set_clean_session(s.clean_session)
                .set_manual_acks(true)
                .set_max_packet_size(s.max_message_bytes, s.max_message_bytes);
            if let Some((user, password)) = &s.credentials {
                o.set_credentials(user.clone(), password.expose().to_string());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(o, request_capacity());
            let driver = Driver::new(settings.clone(), link, tx, Client::V4(client.clone()));
            Ok((Client::V4(client), tokio::spawn(driver.run_v4(eventloop))))
        }
        Protocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
            o.set_keep_alive(s.keep_alive)
                .set_clean_start(s.clean_session)
                .set_manual_acks(true)
                .set_receive_maximum(Some(s.receive_maximum))
                .set_max_packet_size(Some(s.max_message_bytes as u32));
            if !s.clean_session {
                o.set_session_expiry_interval(Some(
                    s.session_expiry.as_secs().min(u64::from(u32::MAX)) as u32,
                ));
            }
            if let Some((user, password)) = &s.credentials {
                o.set_credentials(user.clone(), password.expose().to_string());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(o, request_capacity());
            let driver = Driver::new(settings.clone(), link, tx, Client::V5(client.clone()));
            Ok((Client::V5(client), tokio::spawn(driver.run_v5(eventloop))))
        }
    }
}

struct Driver {
    settings: Arc<Settings>,
    link: Arc<Link>,
    tx: mpsc::Sender<Event>,
    client: Client,
    /// Consecutive connection losses without a message in between.
    restarts: u32,
    subscribed_once: bool,
}

/// What to do after an event.
enum Flow {
    Continue,
    Stop,
}

impl Driver {
    fn new(
        settings: Arc<Settings>,
        link: Arc<Link>,
        tx: mpsc::Sender<Event>,
        client: Client,
    ) -> Self {
        Driver {
            settings,
            link,
            tx,
            client,
            restarts: 0,
            subscribed_once: false,
        }
    }

    async fn run_v4(mut self, mut eventloop: rumqttc::EventLoop) {
        use rumqttc::{ConnectionError, Event as E, Packet};
        loop {
            let flow = match eventloop.poll().await {
                Ok(E::Incoming(Packet::ConnAck(ack))) => self.connected(ack.session_present).await,
                Ok(E::Incoming(Packet::Publish(p))) => {
                    let headers = base_headers(&p.topic, p.qos as u8, p.retain);
                    let topic = p.topic.clone();
                    let qos = p.qos as u8;
                    let payload = p.payload.clone();
                    self.message(&topic, &payload, headers, qos, Delivery::V4(p))
                        .await
                }
                Ok(E::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .position(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    self.suback(refused.map(|i| (i, "Failure".to_string())))
                        .await
                }
                Ok(E::Incoming(Packet::UnsubAck(_))) => {
                    self.link.unsuback();
                    Flow::Continue
                }
                Ok(_) => Flow::Continue,
                Err(ConnectionError::ConnectionRefused(code)) => {
                    let permanent = !matches!(code, rumqttc::ConnectReturnCode::ServiceUnavailable);
                    self.lost(
                        format!("the broker refused the connection: {code:?}"),
                        permanent,
                    )
                    .await
                }
                Err(e) => self.lost(e.to_string(), false).await,
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    async fn run_v5(mut self, mut eventloop: rumqttc::v5::EventLoop) {
        use rumqttc::v5::{ConnectionError, Event as E};
        use v5b::{ConnectReturnCode as Code, Packet};
        loop {
            let flow = match eventloop.poll().await {
                Ok(E::Incoming(Packet::ConnAck(ack))) => self.connected(ack.session_present).await,
                Ok(E::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let qos = p.qos as u8;
                    let mut headers = base_headers(&topic, qos, p.retain);
                    if let Some(props) = &p.properties {
                        if let Some(ct) = &props.content_type {
                            headers.push(("mqtt_content_type".into(), ct.clone()));
                        }
                        headers.extend(props.user_properties.iter().cloned());
                    }
                    let payload = p.payload.clone();
                    self.message(&topic, &payload, headers, qos, Delivery::V5(p))
                        .await
                }
                Ok(E::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack.return_codes.iter().enumerate().find_map(|(i, c)| {
                        (!matches!(c, v5b::SubscribeReasonCode::Success(_)))
                            .then(|| (i, format!("{c:?}")))
                    });
                    self.suback(refused).await
                }
                Ok(E::Incoming(Packet::UnsubAck(_))) => {
                    self.link.unsuback();
                    Flow::Continue
                }
                Ok(_) => Flow::Continue,
                Err(ConnectionError::ConnectionRefused(code)) => {
                    let permanent = !matches!(
                        code,
                        Code::ServiceUnavailable | Code::ServerBusy | Code::ServerUnavailable
                    );
                    self.lost(
                        format!("the broker refused the connection: {code:?}"),
                        permanent,
                    )
                    .await
                }
                Err(e) => self.lost(e.to_string(), false).await,
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// Subscribes when the broker has no session for us (first connect, a
    /// clean session, an expired one) and once per reader, so a changed
    /// config takes effect; a resumed session keeps its subscriptions, and
    /// subscribing again would re-send retained messages (MQTT 3.1.1).
    async fn connected(&mut self, session_present: bool) -> Flow {
        let generation = self.link.next(true);
        info!(broker = %self.settings.shown, client_id = %self.settings.client_id, session_present, generation, "mqtt connected");
        if (session_present && self.subscribed_once) || self.settings.mappings.is_empty() {
            return Flow::Continue;
        }
        self.subscribed_once = true;
        let s = &self.settings;
        let result = match &self.client {
            Client::V4(c) => c
                .try_subscribe_many(s.mappings.iter().map(|m| {
                    rumqttc::SubscribeFilter::new(m.source_pattern.clone(), qos_v4(m.qos))
                }))
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(s.mappings.iter().map(|m| {
                    let mut f = v5b::Filter::new(m.source_pattern.clone(), qos_v5(m.qos));
                    // Retained messages only for a new subscription, not
                    // again on every restart.
                    f.retain_forward_rule = v5b::RetainForwardRule::OnNewSubscribe;
                    f
                }))
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => self.fail(format!("mqtt: subscribing failed: {e}")).await,
        }
    }

    async fn suback(&mut self, refused: Option<(usize, String)>) -> Flow {
        match refused {
            None => Flow::Continue,
            Some((i, code)) => {
                let filter = self
                    .settings
                    .mappings
                    .get(i)
                    .map_or("?", |m| m.source_pattern.as_str());
                let message = format!(
                    "mqtt: the broker at {} refused the subscription to `{filter}` ({code})",
                    self.settings.shown
                );
                self.fail(message).await
            }
        }
    }

    async fn message(
        &mut self,
        topic: &str,
        payload: &[u8],
        headers: Headers,
        qos: u8,
        delivery: Delivery,
    ) -> Flow {
        self.restarts = 0;
        let s = &self.settings;
        let record = match s.rules.record(payload) {
            Ok(mut r) => {
                r.headers = headers;
                r.target = s.mapping_for(topic).and_then(|m| m.target.clone());
                Ok(r)
            }
            Err(error) => Err(bad_record(
                format!("{} topic {topic}", s.shown),
                error,
                payload,
            )),
        };
        let delivery = (qos > 0).then(|| (self.link.current(), delivery));
        match self
            .tx
            .send(Event::Message {
                record,
                meta: delivery,
            })
            .await
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// A lost connection: wait (backoff), then the next poll reconnects;
    /// or give up.
    async fn lost(&mut self, reason: String, permanent: bool) -> Flow {
        self.link.next(false);
        if self.tx.is_closed() {
            return Flow::Stop;
        }
        if permanent {
            return self
                .fail(format!("mqtt: {reason} ({})", self.settings.shown))
                .await;
        }
        self.restarts += 1;
        let r = &self.settings.reconnect;
        if r.exhausted(self.restarts) {
            let message = format!(
                "mqtt: gave up after {} reconnect attempts without a message (reconnect.max_restarts = {}); last error: {reason} ({})",
                self.restarts - 1,
                r.max_restarts,
                self.settings.shown
            );
            return self.fail(message).await;
        }
        let wait = r.delay(self.restarts);
        warn!(broker = %self.settings.shown, error = %reason, attempt = self.restarts, ?wait, "mqtt connection lost; reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(wait) => Flow::Continue,
            _ = self.tx.closed() => Flow::Stop,
        }
    }

    async fn fail(&mut self, message: String) -> Flow {
        let _ = self
            .tx
            .send(Event::Failed(ConnectorError::fatal(message)))
            .await;
        Flow::Stop
    }
}

fn base_headers(topic: &str, qos: u8, retain: bool) -> Headers {
    vec![
        ("mqtt_topic".into(), topic.to_string()),
        ("mqtt_qos".into(), qos.to_string()),
        ("mqtt_retain".into(), retain.to_string()),
    ]
}

fn qos_v4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos_v5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}
