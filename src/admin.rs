//! The admin port (2021): `/metrics`, `/healthz`, `/readyz`, and, when
//! enabled, `/debug/pprof/profile?seconds=N` (a CPU profile in pprof's
//! protobuf format, readable by `go tool pprof` and `pprof`), and with
//! `admin.fault_injection` (tests only) `POST /debug/shoots/{namespace}/crash`,
//! `POST /debug/pipelines/{destination}/crash` (`--kube`) and
//! `POST /debug/pipelines/{destination}/backends/{backend}/crash` (a
//! load-balanced backend's delivery loop).
//!
//! It reads shared state directly (the metrics registry, the health
//! verdict), so a probe never waits on an actor mailbox.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::actors::health::HealthState;
use crate::actors::shoot_manager::{CrashClient, ShootManager};
use crate::actors::unit::Mailbox;
use crate::actors::{Restart, supervisor};
use crate::ingest::Ingest;
use crate::loadbalancing::faults::{Crash, Faults};
use crate::metrics::Metrics;
use actix::Recipient;

/// Longest CPU profile one request may ask for.
const MAX_PROFILE: Duration = Duration::from_secs(60);

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// Health verdicts.
    pub health: Arc<HealthState>,
    /// For the queue gauges of the current destinations.
    pub ingest: Arc<Ingest>,
    /// Serve pprof.
    pub pprof: bool,
    /// Set only with `admin.fault_injection`: serve the crash endpoint.
    pub shoot_manager: Option<Mailbox<ShootManager>>,
    /// Set only with `admin.fault_injection` and `--kube`: serve the
    /// pipeline actors' crash endpoint.
    pub pipeline_crash: Option<crate::operator::context::CrashRequests>,
    /// Set only with `admin.fault_injection`: serve the crash endpoint of
    /// load-balanced backends' delivery loops.
    pub lb_faults: Option<Arc<Faults>>,
    /// Set only with `admin.fault_injection`: serve the restart endpoint of
    /// the supervisor's units.
    pub units: Option<Recipient<Restart>>,
}

/// The router, for tests.
pub fn router(state: AdminState) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if state.pprof {
        r = r.route("/debug/pprof/profile", get(profile));
    }
    if state.shoot_manager.is_some() {
        r = r.route("/debug/shoots/{namespace}/crash", post(crash_shoot));
    }
    if state.pipeline_crash.is_some() {
        r = r.route("/debug/pipelines/{destination}/crash", post(crash_pipeline));
    }
    if state.units.is_some() {
        r = r.route("/debug/units/{unit}/restart", post(restart_unit));
    }
    if state.lb_faults.is_some() {
        r = r.route(
            "/debug/pipelines/{destination}/backends/{backend}/crash",
            post(crash_backend),
        );
    }
    r.with_state(state)
}

/// Serves the admin port until `shutdown` resolves.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn crash_shoot(State(s): State<AdminState>, Path(namespace): Path<String>) -> Response {
    let Some(m) = &s.shoot_manager else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tracing::warn!(shoot = %namespace, "Fault injection: crashing a shoot client");
    match m.send(CrashClient { namespace }).await {
        Ok(true) => (StatusCode::ACCEPTED, "crash injected\n").into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "no such shoot client\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shoot manager not running\n",
        )
            .into_response(),
    }
}

/// `{unit}`: one of [`supervisor::UNITS`].
async fn restart_unit(State(s): State<AdminState>, Path(unit): Path<String>) -> Response {
    let Some(units) = &s.units else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(unit) = supervisor::UNITS.into_iter().find(|u| *u == unit) else {
        let known = supervisor::UNITS.join(", ");
        return (
            StatusCode::NOT_FOUND,
            format!("no such unit; the units are {known}\n"),
        )
            .into_response();
    };
    tracing::warn!(
        unit,
        "Fault injection: restarting a unit of the supervision tree"
    );
    match units.send(Restart(unit)).await {
        Ok(true) => (StatusCode::ACCEPTED, "restart requested\n").into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "the unit does not run here\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "supervisor not running\n").into_response(),
    }
}

async fn crash_pipeline(State(s): State<AdminState>, Path(destination): Path<String>) -> Response {
    let Some(crash) = &s.pipeline_crash else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tracing::warn!(pipeline = %destination, "Fault injection: crashing a pipeline actor");
    match crash.send(destination) {
        Ok(_) => (StatusCode::ACCEPTED, "crash requested\n").into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no pipeline actor runs\n").into_response(),
    }
}

/// `{backend}`: the endpoint (URL-encoded) or its index among the
/// pipeline's backends, sorted.
async fn crash_backend(
    State(s): State<AdminState>,
    Path((destination, backend)): Path<(String, String)>,
) -> Response {
    let Some(faults) = &s.lb_faults else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match faults.crash(&destination, &backend) {
        Crash::Injected { endpoint, loops } => {
            tracing::warn!(pipeline = %destination, backend = %endpoint, loops, "Fault injection: crashing a load-balanced backend's delivery loop");
            (
                StatusCode::ACCEPTED,
                format!("crash injected into {loops} delivery loop(s) of {endpoint}\n"),
            )
                .into_response()
        }
        Crash::NoPipeline => (
            StatusCode::NOT_FOUND,
            format!("no load-balanced pipeline {destination}\n"),
        )
            .into_response(),
        Crash::NoBackend(backends) => (
            StatusCode::NOT_FOUND,
            format!(
                "{destination} has no backend {backend}; its backends: {}\n",
                backends.join(", ")
            ),
        )
            .into_response(),
        Crash::NotRunning(endpoint) => (
            StatusCode::CONFLICT,
            format!("the delivery loop of {endpoint} does not run now (it waits for its restart, or the backend is out for failing)\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let snapshot = s.ingest.snapshot();
    s.metrics
        .refresh_queues(snapshot.destinations().map(AsRef::as_ref));
    s.metrics.refresh_shoot_queues(s.ingest.shoots());
    match s.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

async fn healthz(State(s): State<AdminState>) -> Response {
    match s.health.live() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: {why}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ProfileParams {
    seconds: Option<u64>,
}

async fn profile(Query(p): Query<ProfileParams>) -> Response {
    let secs = Duration::from_secs(p.seconds.unwrap_or(10)).min(MAX_PROFILE);
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
    {
        Ok(g) => g,
        Err(e) => {
            return (
                StatusCode::CONFLICT,
                format!("cannot start the profiler: {e}\n"),
            )
                .into_response();
        }
    };
    tokio::time::sleep(secs).await;
    let report = match guard.report().build() {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot build the profile: {e}\n"),
            )
                .into_response();
        }
    };
    match report.pprof() {
        Ok(profile) => {
            use pprof::protos::Message;
            let mut body = Vec::new();
            if let Err(e) = profile.encode(&mut body) {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the profile: {e}\n"),
                )
                    .into_response();
            }
            ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the profile: {e}\n"),
        )
            .into_response(),
    }
}
