//! HTTP API simulators for end-to-end tests of the HTTP sources: each
//! binds `127.0.0.1:0` and serves on the current tokio runtime.
//!
//! - [`chargeover::ChargeOverSim`]: ChargeOver REST API v3 (`where`,
//!   `order`, `limit`/`offset`, Basic auth, ChargeOver's envelope).
//! - [`rest::RestSim`]: one dataset behind every common pagination style
//!   (offset, page, cursor, next URL, `Link` header, keyset, POST search),
//!   with none/basic/bearer/API-key/OAuth2 authentication.
//!
//! - [`stripe::StripeSim`]: Stripe's Reporting API (report types, report
//!   runs created form-encoded, listed with pagination, files), with report
//!   latency, failed runs and a log of the runs created.
//!
//! All log every request ([`RequestLog`]) and take fault knobs: fail the
//! next N requests (429 with `Retry-After`, 5xx), slow them, truncate
//! successful bodies mid-JSON, and modify records while a listing is paged.

mod common;

pub mod chargeover;
pub mod rest;
pub mod stripe;
pub mod websocket;

pub use chargeover::ChargeOverSim;
pub use common::{pretty, BodyRewrite, RequestLog, SimClock, SimServer};
pub use rest::{RestAuth, RestSim, RestSimConfig};
pub use stripe::StripeSim;
pub use websocket::{SimAuth, WsSim, WsSimConfig};
