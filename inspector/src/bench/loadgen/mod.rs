//! The built-in load generator of `inspector bench`: netperf's four classic tests and a UDP
//! flood, between two network namespaces (or inside one), each bounded in time, timing every
//! transaction.
//!
//! - `rr`: one TCP connection, 64-byte request, 64-byte response, one at a time (`TCP_RR`).
//! - `crr`: a new TCP connection per transaction - connect, request, response, close
//!   (`TCP_CRR`); the connect time (SYN to SYN-ACK, where a Service's first-packet NAT
//!   lookup happens) is timed on its own. The client closes with an RST (`SO_LINGER` 0), as
//!   netperf can, so no `TIME_WAIT` exhausts its ports.
//! - `stream`: one TCP connection, 128 KiB writes as fast as they go (`TCP_STREAM`);
//!   bytes counted at the receiver.
//! - `udp-rr`: 64-byte UDP request and response, one at a time (`UDP_RR`).
//! - `udp-flood`: 64-byte datagrams as fast as one sender pushes them (sendmmsg), counted at
//!   the receiver.
//! - `iperf3-udp`: the same flood as a user measures it, with plain iperf3 (unpinned, default
//!   buffers; see `iperf3`).
//!
//! Client and server threads are pinned to the CPUs the caller gives (`Cpus`). CPU per operation is the whole machine's busy
//! time (/proc/stat, softirqs included) over the measured window, divided by operations.
mod iperf3;
mod tcp;
mod udp;

use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::LoadKind;
use crate::{net::check_traffic_addr as check_addr, sys::netns::run_in};

/// Where the two ends run and how the client reaches the server.
#[derive(Clone, Debug)]
pub struct Ends {
    pub client_ns: PathBuf,
    pub server_ns: PathBuf,
    /// The server binds this address (port from the test).
    pub bind: std::net::IpAddr,
    /// The client connects to this address (port from the test): the server's own, a
    /// published host port, or a `ClusterIP`.
    pub target: std::net::IpAddr,
    /// Added to the test's port on the client side (published host ports differ from the
    /// container's, so they do not catch host-mode traffic).
    pub port_offset: u16,
    /// Added to every workload's port on both sides (`bench --between` moves the block of
    /// ports to one that is free in the server's namespace).
    pub shift: u16,
    /// The user's own server answers rr and crr on this port (`--between SRC DST:PORT`): no
    /// server of ours is started.
    pub user_port: Option<u16>,
}

impl Ends {
    /// Where the client connects for `t`.
    fn target(&self, t: LoadKind) -> SocketAddr {
        let port = self
            .user_port
            .unwrap_or_else(|| self.port(t) + self.port_offset);
        SocketAddr::new(self.target, port)
    }

    /// The port the server of `t` listens on.
    pub(super) const fn port(&self, t: LoadKind) -> u16 {
        t.port() + self.shift
    }
}

/// One run's result.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Run {
    /// Operations per second (Gbit/s for stream).
    pub rate: f64,
    /// Operations in the measured window (MiB for stream).
    pub ops: f64,
    /// Per-transaction latency (rr, crr, udp-rr).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// crr only: the `connect()` time.
    pub connect_p50_us: Option<f64>,
    pub connect_p99_us: Option<f64>,
    /// Whole-machine busy CPU time per operation.
    pub cpu_us_per_op: f64,
    /// UDP requests that got no answer within a second; failed connects.
    pub errors: u64,
}

/// Busy and total time of all CPUs (/proc/stat, in clock ticks).
pub(super) fn cpu_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Percentile of sorted nanoseconds, in microseconds.
fn pct_us(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(f64::from(sorted[i]) / 1e3)
}

pub(super) fn ns32(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Timing of one measured window: warm-up first, then `secs`.
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub(super) warm: Duration,
    pub(super) dur: Duration,
    pub(super) client_cpu: usize,
    pub(super) server_cpu: usize,
}

/// What the client side of a transactional test brings back.
#[derive(Default)]
pub(super) struct Timed {
    pub(super) lat: Vec<u32>,
    pub(super) connect: Vec<u32>,
    pub(super) errors: u64,
    pub(super) elapsed: f64,
    pub(super) cpu_busy: u64,
}

/// CPUs the client and the server are pinned to.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct Cpus {
    pub client: usize,
    pub server: usize,
}

/// Runs `w` between `ends` for `secs` seconds (after a 0.3 s warm-up).
///
/// # Errors
/// Sockets that cannot be made, a server that is not reachable, an address outside the lab's.
pub fn run(w: LoadKind, ends: &Ends, secs: f64, cpus: Cpus, stop: &AtomicBool) -> io::Result<Run> {
    run_with(w, ends, secs, cpus, stop, false)
}

/// [`run`]; `busy_poll`: the flood's receiver spins instead of sleeping between batches.
pub fn run_with(
    test: LoadKind,
    ends: &Ends,
    secs: f64,
    cpus: Cpus,
    stop: &AtomicBool,
    busy_poll: bool,
) -> io::Result<Run> {
    check_addr(ends.target)?;
    check_addr(ends.bind)?;
    let w = Window {
        warm: Duration::from_millis(300),
        dur: Duration::from_secs_f64(secs.max(0.05)),
        client_cpu: cpus.client,
        server_cpu: cpus.server,
    };
    #[expect(clippy::cast_precision_loss, reason = "a tick rate")]
    let tps = crate::sys::time::clock_ticks_per_sec() as f64;
    let finish = |t: Timed| -> Run {
        let mut lat = t.lat;
        lat.sort_unstable();
        let mut con = t.connect;
        con.sort_unstable();
        let ops = lat.len() as f64;
        Run {
            rate: ops / t.elapsed.max(1e-9),
            ops,
            p50_us: pct_us(&lat, 50.0),
            p99_us: pct_us(&lat, 99.0),
            connect_p50_us: pct_us(&con, 50.0),
            connect_p99_us: pct_us(&con, 99.0),
            cpu_us_per_op: t.cpu_busy as f64 / tps * 1e6 / ops.max(1.0),
            errors: t.errors,
        }
    };
    match test {
        LoadKind::Rr => tcp::rr(ends, w, stop).map(finish),
        LoadKind::Crr => tcp::crr(ends, w, stop).map(finish),
        LoadKind::UdpRr => udp::rr(ends, w, stop).map(finish),
        LoadKind::Stream => tcp::stream(ends, w, stop, tps),
        LoadKind::UdpFlood => udp::flood(ends, w, stop, busy_poll, tps),
        LoadKind::Iperf3Udp => iperf3::udp(ends, w, stop),
        LoadKind::UdpDrops => udp::drops(ends, w, stop, tps),
    }
}

/// A listener in the server's namespace whose `accept()` gives up after 200 ms (so the
/// server thread can notice the end).
pub(super) fn listen(ends: &Ends, port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ends.bind, port);
    run_in(&ends.server_ns, move || -> io::Result<TcpListener> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(s.into())
    })?
}

/// Measures a transactional client loop: `one` does one transaction and returns its
/// (latency, connect time); it runs for the warm-up unmeasured, then for the window.
pub(super) fn measure(
    w: Window,
    stop: &AtomicBool,
    mut one: impl FnMut() -> io::Result<(Duration, Option<Duration>)>,
) -> io::Result<Timed> {
    let mut t = Timed::default();
    let warm_end = Instant::now() + w.warm;
    while Instant::now() < warm_end {
        if one().is_err() {
            t.errors += 1;
        }
    }
    let (b0, _) = cpu_ticks();
    let t0 = Instant::now();
    while t0.elapsed() < w.dur && !stop.load(Ordering::Relaxed) {
        match one() {
            Ok((d, c)) => {
                t.lat.push(ns32(d));
                if let Some(c) = c {
                    t.connect.push(ns32(c));
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
            {
                t.errors += 1;
            }
            Err(e) => return Err(e),
        }
    }
    t.elapsed = t0.elapsed().as_secs_f64();
    t.cpu_busy = cpu_ticks().0.saturating_sub(b0);
    Ok(t)
}

pub(super) fn join<T>(h: std::thread::JoinHandle<io::Result<T>>, what: &str) -> io::Result<T> {
    h.join()
        .map_err(|_| io::Error::other(format!("{what} panicked")))?
}

/// The first connection within 5 s (the listener's `accept()` times out every 200 ms).
pub(super) fn accept_one(listener: &TcpListener) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok((s, _)) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => {}
        }
    }
}
