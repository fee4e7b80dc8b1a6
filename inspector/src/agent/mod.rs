//! `inspector agent`: the long-running front-end for a node of a cluster. One session, as
//! `flows` runs it, followed for as long as the process lives; each round (every
//! `--interval`) reads flows, drops and the kernel's counters, folds them into monotone
//! Prometheus counters (`metrics`), and publishes the exposition and the JSON records for
//! the HTTP side (`http`) to serve. SIGINT/SIGTERM end it like `flows`: everything detached.
mod api;
pub mod histogram;
mod http;
pub mod metrics;
mod stream;

use std::{
    collections::VecDeque,
    io::Read as _,
    net::SocketAddr,
    os::{fd::AsFd as _, unix::net::UnixStream},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use crate::{
    identity::lifecycle::Event,
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

/// Runs until stopped. The address is bound before anything is attached, so a busy port is a
/// one-line error that changes nothing.
///
/// # Errors
/// The address cannot be bound; the session cannot start or read the kernel.
pub fn run(sopts: &session::Options, a: &Options) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(a.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.listen))?;
    let (wake_tx, wake_rx) = UnixStream::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let (req_tx, req_rx) = mpsc::channel::<http::Request>();
    let shared = Arc::new(http::Shared {
        published: Mutex::new(http::Published::default()),
        requests: Mutex::new(req_tx),
        wake: wake_tx,
        path_identity: sopts.identity.clone(),
        path: Mutex::new((None, false)),
    });
    let _server = http::serve(listener, Arc::clone(&shared))?;
    let (mut s, changes) = Session::start(sopts)?;
    let mut m = metrics::Metrics::new(&a.node, a.max_series);
    say(&changes);
    m.update_changes(&[], &changes);
    m.update_workloads(s.identity().live());
    let mut events: VecDeque<Event> = VecDeque::new();
    let mut ticker = Ticker::new(None, a.rescan)?;
    let mut next = Instant::now();
    eprintln!("inspector: agent listening on http://{}/metrics", a.listen);
    while !ticker.stopped() {
        {
            let mut fds = s.fds();
            fds.push(wake_rx.as_fd());
            ticker.wait(&fds, Some(next).into_iter().chain(s.next_due()).min());
        }
        if s.announced() {
            ticker.rescan_soon();
        }
        let _ = s.tick()?;
        let t0 = Instant::now();
        if ticker.rescan_due() {
            s.sync_clock();
            let changes = s.reconcile();
            say(&changes);
            let ev = s.take_lifecycle();
            m.update_changes(&ev, &changes);
            m.update_workloads(s.identity().live());
            events.extend(ev);
            while events.len() > api::EVENTS_KEPT {
                events.pop_front();
            }
        }
        // Requests of the API, answered between rounds.
        let mut buf = [0u8; 64];
        while (&wake_rx).read(&mut buf).is_ok_and(|n| n > 0) {}
        while let Ok(r) = req_rx.try_recv() {
            if r.ask == api::Ask::Flows {
                stream::flows(&s, &r.filter, r.reply);
            } else {
                let body = api::answer(&mut s, r.ask, &r.filter, &events)
                    .map(http::Answer::Whole)
                    .map_err(|e| e.to_string());
                let _ = r.reply.send(body);
            }
        }
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + a.interval;
        let records = s.with_flow_counters(|raw, name| {
            m.update_flows(raw, name);
            raw.len()
        })?;
        m.update_services(&s.service_connections());
        let (drops, stats) = (s.drops()?, s.stats()?);
        m.update_drops(&drops);
        if let Some(h) = s.hop_histograms()? {
            m.update_latency(&h);
        }
        m.update_health(&stats, t0.elapsed(), (records, drops.len()));
        if let Ok(mut p) = shared.published.lock()
            && !p.ready
        {
            *p = http::Published {
                ready: true,
                exposition: Some(m.exposition()),
            };
        }
    }
    drop(s);
    Ok(())
}

/// Prints warnings (attach changes are counted, not printed).
fn say(changes: &[session::Change]) {
    for c in changes {
        if c.is_warning() {
            eprintln!("inspector: {c}");
        }
    }
}
