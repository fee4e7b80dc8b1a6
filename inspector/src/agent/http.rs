//! The agent's HTTP side (axum on its own thread and a one-thread tokio runtime): `/metrics`
//! (Prometheus text, or `OpenMetrics` when the scraper asks for it), `/healthz` (the process
//! answers), `/readyz` (programs attached and the first round done), and a JSON API over the
//! latest round: `/api/flows`, `/api/drops`, `/api/stats`, each the CLI's `-o json` records.
//! Handlers only read the latest published round: a scrape never waits for the kernel.
use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};

/// What the session thread publishes after each round.
#[derive(Default)]
pub struct Published {
    pub ready: bool,
    pub metrics: String,
    pub openmetrics: String,
    pub flows: String,
    pub drops: String,
    pub stats: String,
}

pub type Shared = Arc<Mutex<Published>>;

fn read<T>(s: &Shared, f: impl FnOnce(&Published) -> T) -> T {
    match s.lock() {
        Ok(p) => f(&p),
        Err(p) => f(&p.into_inner()),
    }
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (ctype, body) = if open {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            read(&s, |p| p.openmetrics.clone()),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            read(&s, |p| p.metrics.clone()),
        )
    };
    ([(header::CONTENT_TYPE, ctype)], body)
}

async fn ready(State(s): State<Shared>) -> impl IntoResponse {
    if read(&s, |p| p.ready) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

fn json(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body)
}

/// Serves on `listener` until the process ends.
pub fn serve(
    listener: std::net::TcpListener,
    shared: Shared,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    Ok(std::thread::spawn(move || {
        rt.block_on(async move {
            let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app =
                Router::new()
                    .route("/metrics", get(metrics))
                    .route("/healthz", get(|| async { "ok\n" }))
                    .route("/readyz", get(ready))
                    .route(
                        "/api/flows",
                        get(|State(s): State<Shared>| async move {
                            json(read(&s, |p| p.flows.clone()))
                        }),
                    )
                    .route(
                        "/api/drops",
                        get(|State(s): State<Shared>| async move {
                            json(read(&s, |p| p.drops.clone()))
                        }),
                    )
                    .route(
                        "/api/stats",
                        get(|State(s): State<Shared>| async move {
                            json(read(&s, |p| p.stats.clone()))
                        }),
                    )
                    .with_state(shared);
            let _ = axum::serve(l, app).await;
        });
    }))
}
