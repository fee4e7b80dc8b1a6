//! `inspector agent`: the long-running front-end for a node of a cluster. One session, as
//! `flows` runs it, followed for as long as the process lives; each round (every
//! `--interval`) reads flows, drops and the kernel's counters, folds them into monotone
//! Prometheus counters (`metrics`), and publishes the exposition and the JSON records for
//! the HTTP side (`http`) to serve. SIGINT/SIGTERM end it like `flows`: everything detached.
mod http;
pub mod metrics;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    output::{Format, Printer},
    session::{self, Session, Ticker},
};

/// The agent's own settings (the session's are the CLI's flags).
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub interval: Duration,
    /// The `node` label (default: the host name).
    pub node: String,
    /// Label sets per metric family before folding into `other`.
    pub max_series: usize,
    pub rescan: Duration,
}

fn records<T: serde::Serialize>(kind: &str, items: &[T]) -> String {
    let mut p = Printer::new(Format::Json, Vec::new());
    for i in items {
        let _ = p.record(kind, i);
    }
    String::from_utf8(p.into_inner()).unwrap_or_default()
}

/// Runs until stopped. The address is bound before anything is attached, so a busy port is a
/// one-line error that changes nothing.
///
/// # Errors
/// The address cannot be bound; the session cannot start or read the kernel.
pub fn run(sopts: &session::Options, a: &Options) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(a.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.listen))?;
    let shared: http::Shared = Arc::new(Mutex::new(http::Published::default()));
    let _server = http::serve(listener, Arc::clone(&shared))?;
    let (mut s, changes) = Session::start(sopts)?;
    for c in &changes {
        if c.is_warning() {
            eprintln!("inspector: {c}");
        }
    }
    let mut m = metrics::Metrics::new(&a.node, a.max_series);
    let mut ticker = Ticker::new(None, a.rescan)?;
    let mut next = Instant::now();
    eprintln!("inspector: agent listening on http://{}/metrics", a.listen);
    while !ticker.stopped() {
        ticker.wait(&s.fds(), Some(next).into_iter().chain(s.next_due()).min());
        let _ = s.tick()?;
        let t0 = Instant::now();
        if ticker.rescan_due() {
            s.sync_clock();
            for c in s.reconcile() {
                if c.is_warning() {
                    eprintln!("inspector: {c}");
                }
            }
        }
        if Instant::now() < next {
            continue;
        }
        next += a.interval;
        let (flows, drops, stats) = (s.flows()?, s.drops()?, s.stats()?);
        m.update_flows(&flows);
        m.update_services(&flows);
        m.update_drops(&drops);
        m.update_health(&stats, t0.elapsed());
        let publish = http::Published {
            ready: true,
            metrics: m.encode(false),
            openmetrics: m.encode(true),
            flows: records("flow", &flows),
            drops: records("drop", &drops),
            stats: records("stats", &[&stats]),
        };
        if let Ok(mut p) = shared.lock() {
            *p = publish;
        }
    }
    drop(s);
    Ok(())
}
