//! The admin HTTP server of `tributary run --admin-addr`: health for
//! supervisors, Prometheus metrics, connector status as JSON, and a status
//! page for people. docs/monitoring.md documents every endpoint.
//!
//! One module per concern, each contributing its routes: `health` (`/live`,
//! `/ready`, `/health`), `metrics` (`/metrics`), `status` (`/status...`,
//! tributary's own view), `connect` (Kafka Connect's `/connectors...` and
//! `/connector-plugins...`), `offsets` (Connect's offsets API and
//! stop/resume), `page` (`/`). Unknown paths and methods are answered with
//! Connect's error body.
//! Everything a route needs is in [`AdminState`]: one [`ConnectorHandle`]
//! per connector, through which routes reach that connector's stats, state
//! store and stop switch.

mod auth;
pub(crate) mod connect;
pub(crate) mod error;
mod health;
mod metrics;
mod offsets;
mod page;
mod status;
pub mod view;

use crate::exit::{Code, Failure};
use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tributary_core::{Clock, Secret};
use tributary_metrics::Registry;
use tributary_runtime::ConnectorHandle;

/// What every route reads.
pub struct AdminState {
    pub connectors: Arc<Connectors>,
    pub metrics: Registry,
    pub clock: Arc<dyn Clock>,
    pub rates: view::Rates,
    /// When this process started serving, for the uptime the views show.
    pub started: std::time::Instant,
    /// `HOST:PORT` of the admin server, Kafka Connect's `worker_id`; set
    /// once it listens.
    pub worker_id: String,
    /// The cluster this process is a worker of (`tributary worker`): the
    /// routes then answer for every connector of the cluster.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl AdminState {
    pub fn connector(&self, name: &str) -> Option<Arc<ConnectorHandle>> {
        self.connectors
            .list()
            .iter()
            .find(|c| c.name() == name)
            .cloned()
    }
}

/// The connectors this process runs: fixed for `tributary run`, changed by
/// a worker as the cluster assigns connectors to it and takes them away.
#[derive(Debug, Default)]
pub struct Connectors(std::sync::RwLock<Arc<Vec<Arc<ConnectorHandle>>>>);

impl Connectors {
    pub fn new(handles: Vec<Arc<ConnectorHandle>>) -> Arc<Connectors> {
        Arc::new(Connectors(std::sync::RwLock::new(Arc::new(handles))))
    }

    /// The connectors now (a snapshot: a change does not alter it).
    pub fn list(&self) -> Arc<Vec<Arc<ConnectorHandle>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, handles: Vec<Arc<ConnectorHandle>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(handles);
    }
}

/// `PORT` alone is a port on the loopback interface: the server is never
/// reachable from other machines unless an address says so.
pub fn parse_addr(text: &str) -> Result<SocketAddr, Failure> {
    let text = text.trim();
    let full = if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
        format!("127.0.0.1:{text}")
    } else {
        text.to_string()
    };
    full.parse().map_err(|_| {
        Failure::new(
            Code::Config,
            anyhow::anyhow!(
                "--admin-addr `{text}` is not an address: give HOST:PORT (e.g. 127.0.0.1:8088) or a port"
            ),
        )
    })
}

/// The bearer token from `file`, else from `TRIBUTARY_ADMIN_TOKEN`; `None`
/// when neither is set. Registered as a secret so no log line can show it.
pub fn load_token(file: Option<&Path>) -> Result<Option<Secret>, Failure> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                Code::Config,
                anyhow::anyhow!("--admin-token-file {}: {e}", path.display()),
            )
        })?,
        None => match std::env::var("TRIBUTARY_ADMIN_TOKEN") {
            Ok(t) => t,
            Err(_) => return Ok(None),
        },
    };
    let token = text.trim();
    if token.is_empty() {
        let from = file.map_or("TRIBUTARY_ADMIN_TOKEN".to_string(), |p| {
            p.display().to_string()
        });
        return Err(Failure::new(
            Code::Config,
            anyhow::anyhow!("the admin token in {from} is empty"),
        ));
    }
    Ok(Some(Secret::new(token)))
}

fn router(state: Arc<AdminState>, token: Option<Secret>) -> Router {
    // Health and readiness stay open for probes that cannot send a token;
    // the page is static and fetches its data from protected routes.
    let open = Router::new().merge(health::routes()).merge(page::routes());
    let protected = Router::new()
        .merge(metrics::routes())
        .merge(status::routes())
        .merge(connect::routes())
        .merge(offsets::routes());
    // A worker answers for the whole cluster: requests about a connector
    // another worker runs go there, and the cluster's own routes are added.
    let protected = match state.cluster {
        Some(_) => crate::cluster::rest::wrap(protected, state.clone()),
        None => protected,
    };
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        Arc::new(token),
        auth::require_token,
    ));
    open.merge(protected)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown`. Returns the bound address (the
/// real port when `addr` asked for port 0).
pub async fn serve(
    addr: SocketAddr,
    token: Option<Secret>,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<SocketAddr, Failure> {
    let listener = bind(addr).await?;
    serve_on(listener, token, state, shutdown).map(|(bound, _)| bound)
}

/// Binds `addr`, for a process that needs the bound address (a worker's
/// id) before it can build its [`AdminState`].
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::new(
            Code::Config,
            anyhow::anyhow!("--admin-addr {addr}: cannot listen: {e}"),
        )
    })
}

/// [`serve`] on a bound listener; also returns the state the routes read.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    token: Option<Secret>,
    mut state: AdminState,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Arc<AdminState>), Failure> {
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::new(Code::Failure, anyhow::anyhow!("admin server: {e}")))?;
    if !bound.ip().is_loopback() && token.is_none() {
        tracing::warn!(%bound, "the admin server is reachable from other machines without a token; set --admin-token-file or TRIBUTARY_ADMIN_TOKEN");
    }
    state.worker_id = bound.to_string();
    let state = Arc::new(state);
    view::spawn_rate_sampler(state.clone(), shutdown.clone());
    let app = router(state.clone(), token);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("admin server stopped: {e}");
        }
    });
    tracing::info!(addr = %bound, "admin server listening on http://{bound}");
    Ok((bound, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_means_loopback() {
        assert_eq!(
            parse_addr("8088").unwrap(),
            "127.0.0.1:8088".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:9000").unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        let err = parse_addr("localhost:x").unwrap_err();
        assert_eq!(err.code, Code::Config);
        assert!(err.error.to_string().contains("HOST:PORT"), "{}", err.error);
    }
}
