//! The agent's HTTP side (axum on its own thread and a one-thread tokio runtime): `/metrics`
//! (Prometheus text, or `OpenMetrics` when the scraper asks for it), `/healthz` (the process
//! answers), `/readyz` (programs attached and the first round done), and the JSON API:
//! `/api/flows|drops|stats|latency|topology|events` are asked of the session thread (a
//! request is queued and the thread woken; it answers between rounds), `/api/services` reads
//! the rules on a blocking thread, and `/api/path` runs one `path` probe, at most one at a
//! time and one per [`PATH_EVERY`] (else 429 with `Retry-After`).
//! A scrape encodes the registry as the last round left it: it never waits for the kernel.
use std::{
    collections::HashMap,
    io::Write as _,
    os::unix::net::UnixStream,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::api::{ApiFilter, Ask};
use crate::{
    net::Proto,
    output::{Format, Printer},
    session::path::{PathOptions, run as run_path},
};

/// The shortest time between two `path` probes.
pub const PATH_EVERY: Duration = Duration::from_secs(5);
/// How long a request waits for the session thread.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// What the session thread publishes after each round.
#[derive(Default)]
pub struct Published {
    pub ready: bool,
    pub exposition: Option<super::metrics::Exposition>,
}

/// A piece of a streamed answer; an empty one ends it (a stream that ends without it was
/// cut, and its body ends in an error).
pub type Chunk = axum::body::Bytes;

/// An answer: whole, or records streamed as the session thread writes them.
pub enum Answer {
    Whole(String),
    Records(tokio::sync::mpsc::Receiver<Chunk>),
}

/// A request for the session thread, and where its answer goes.
pub struct Request {
    pub ask: Ask,
    pub filter: ApiFilter,
    pub reply: tokio::sync::oneshot::Sender<Result<Answer, String>>,
}

/// Everything the handlers share.
pub struct Shared {
    pub published: Mutex<Published>,
    pub requests: Mutex<mpsc::Sender<Request>>,
    /// Written to wake the session thread for a request.
    pub wake: UnixStream,
    pub path_identity: crate::identity::tracker::Options,
    /// When the last `path` probe started, and whether one runs.
    pub path: Mutex<(Option<Instant>, bool)>,
}

type S = Arc<Shared>;

fn published<T>(s: &Shared, f: impl FnOnce(&Published) -> T) -> T {
    match s.published.lock() {
        Ok(p) => f(&p),
        Err(p) => f(&p.into_inner()),
    }
}

async fn metrics(State(s): State<S>, headers: HeaderMap) -> impl IntoResponse {
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let ctype = if open {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    let body = published(&s, |p| p.exposition.clone()).map_or_else(String::new, |e| e.encode(open));
    ([(header::CONTENT_TYPE, ctype)], body)
}

async fn ready(State(s): State<S>) -> impl IntoResponse {
    if published(&s, |p| p.ready) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

fn ndjson(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn error(code: StatusCode, msg: &str) -> Response {
    (code, format!("{msg}\n")).into_response()
}

async fn ask(s: S, what: Ask, q: HashMap<String, String>) -> Response {
    let filter = match ApiFilter::parse(&q) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    let sent = s.requests.lock().ok().is_some_and(|tx| {
        tx.send(Request {
            ask: what,
            filter,
            reply,
        })
        .is_ok()
    });
    if !sent {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the session has ended");
    }
    let _ = (&s.wake).write(&[1]);
    match tokio::time::timeout(ANSWER_WITHIN, rx).await {
        Ok(Ok(Ok(Answer::Whole(body)))) => ndjson(body),
        Ok(Ok(Ok(Answer::Records(rx)))) => {
            let chunks = futures::stream::unfold(Some(rx), |rx| async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(c) if c.is_empty() => None,
                    Some(c) => Some((Ok(c), Some(rx))),
                    None => Some((Err(std::io::Error::other("the answer was cut off")), None)),
                }
            });
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                axum::body::Body::from_stream(chunks),
            )
                .into_response()
        }
        Ok(Ok(Err(e))) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session did not answer in time",
        ),
    }
}

async fn services(q: HashMap<String, String>) -> Response {
    let filter = match ApiFilter::parse(&q) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match tokio::task::spawn_blocking(move || super::api::services(&filter)).await {
        Ok(Ok(body)) => ndjson(body),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The `path` options of a request: `src`, `dst` (as the CLI's arguments), `proto` (tcp or
/// udp) and `timeout` (seconds, at most 10).
fn path_options(s: &Shared, q: &HashMap<String, String>) -> Result<PathOptions, String> {
    if let Some(k) = q
        .keys()
        .find(|k| !["src", "dst", "proto", "timeout"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown parameter '{k}': use src, dst, proto, timeout"
        ));
    }
    let need = |k: &str| {
        q.get(k).cloned().ok_or_else(|| {
            format!("'{k}' is missing: /api/path?src=WORKLOAD&dst=DEST[&proto=tcp|udp]")
        })
    };
    let proto = match q.get("proto").map_or("tcp", String::as_str) {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        p => return Err(format!("proto '{p}': path probes tcp or udp")),
    };
    let timeout = match q.get("timeout") {
        None => 2.0,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|t| *t > 0.0 && *t <= 10.0)
            .ok_or_else(|| format!("timeout '{t}': seconds, above 0 and at most 10"))?,
    };
    Ok(PathOptions {
        src: need("src")?,
        dst: need("dst")?,
        src_pick: None,
        dst_pick: None,
        proto,
        watch: false,
        timeout: Duration::from_secs_f64(timeout),
        identity: s.path_identity.clone(),
        ready_file: None,
    })
}

async fn path(State(s): State<S>, Query(q): Query<HashMap<String, String>>) -> Response {
    let opts = match path_options(&s, &q) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    {
        let Ok(mut g) = s.path.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "path state poisoned");
        };
        let wait =
            g.0.map_or(Duration::ZERO, |t| PATH_EVERY.saturating_sub(t.elapsed()));
        if g.1 || !wait.is_zero() {
            let secs = wait.as_secs().max(1).to_string();
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs)],
                "one path probe at a time, at most one every 5 s\n",
            )
                .into_response();
        }
        *g = (Some(Instant::now()), true);
    }
    let s2 = Arc::clone(&s);
    let done = tokio::task::spawn_blocking(move || {
        let report = run_path(&opts);
        if let Ok(mut g) = s2.path.lock() {
            g.1 = false;
        }
        report
    })
    .await;
    match done {
        Ok(Ok(report)) => {
            let mut p = Printer::new(Format::Json, Vec::new());
            let _ = crate::output::probe::render(&mut p, &report);
            ndjson(String::from_utf8(p.into_inner()).unwrap_or_default())
        }
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Serves on `listener` until the process ends.
pub fn serve(
    listener: std::net::TcpListener,
    shared: S,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let route = |what: Ask| {
        get(move |State(s): State<S>, Query(q): Query<HashMap<String, String>>| ask(s, what, q))
    };
    Ok(std::thread::spawn(move || {
        rt.block_on(async move {
            let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = Router::new()
                .route("/metrics", get(metrics))
                .route("/healthz", get(|| async { "ok\n" }))
                .route("/readyz", get(ready))
                .route("/api/flows", route(Ask::Flows))
                .route("/api/drops", route(Ask::Drops))
                .route("/api/stats", route(Ask::Stats))
                .route("/api/latency", route(Ask::Latency))
                .route("/api/topology", route(Ask::Topology))
                .route("/api/events", route(Ask::Events))
                .route(
                    "/api/services",
                    get(|Query(q): Query<HashMap<String, String>>| services(q)),
                )
                .route("/api/path", get(path))
                .with_state(shared);
            let _ = axum::serve(l, app).await;
        });
    }))
}
