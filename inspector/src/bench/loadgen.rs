//! The built-in load generator of `inspector bench`: netperf's four classic tests, between two
//! network namespaces (or inside one), each bounded in time, timing every transaction.
//!
//! - `rr`: one TCP connection, 64-byte request, 64-byte response, one at a time (`TCP_RR`).
//! - `crr`: a new TCP connection per transaction - connect, request, response, close
//!   (`TCP_CRR`); the connect time (SYN to SYN-ACK, where a Service's first-packet NAT
//!   lookup happens) is timed on its own. The client closes with an RST (`SO_LINGER` 0), as
//!   netperf can, so no `TIME_WAIT` exhausts its ports.
//! - `stream`: one TCP connection, 128 KiB writes as fast as they go (`TCP_STREAM`);
//!   bytes counted at the receiver.
//! - `udp-rr`: 64-byte UDP request and response, one at a time (`UDP_RR`).
//!
//! Client and server threads are pinned to different CPUs (0 and 1), so the sender's CPU
//! carries its half of the path in every mode. CPU per operation is the whole machine's busy
//! time (/proc/stat, softirqs included) over the measured window, divided by operations.
use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::workload::pin;
use crate::{
    sys::netns::{run_in, spawn_in},
    traffic::check_addr,
};

/// Which test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Test {
    Rr,
    Crr,
    Stream,
    UdpRr,
}

impl Test {
    pub const ALL: [Self; 4] = [Self::Rr, Self::Crr, Self::Stream, Self::UdpRr];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Crr => "crr",
            Self::Stream => "stream",
            Self::UdpRr => "udp-rr",
        }
    }

    /// Unit of `rate`.
    #[must_use]
    pub const fn unit(self) -> &'static str {
        match self {
            Self::Rr | Self::UdpRr => "trans/s",
            Self::Crr => "conn/s",
            Self::Stream => "Gbit/s",
        }
    }

    /// What one operation is (for CPU per operation).
    #[must_use]
    pub const fn op(self) -> &'static str {
        match self {
            Self::Rr | Self::UdpRr => "transaction",
            Self::Crr => "connection",
            Self::Stream => "MiB",
        }
    }

    /// The server's port (the same on the host side of published ports and on Services).
    #[must_use]
    pub const fn port(self) -> u16 {
        match self {
            Self::Rr => 9101,
            Self::Stream => 9102,
            Self::Crr => 9103,
            Self::UdpRr => 9104,
        }
    }

    #[must_use]
    pub const fn proto(self) -> &'static str {
        match self {
            Self::UdpRr => "udp",
            _ => "tcp",
        }
    }

    /// # Errors
    /// An unknown name, in one line.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown workload '{s}': use rr, crr, stream or udp-rr"))
    }
}

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
}

impl Ends {
    fn target(&self, t: Test) -> SocketAddr {
        SocketAddr::new(self.target, t.port() + self.port_offset)
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
fn cpu_ticks() -> (u64, u64) {
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

/// Clock ticks per second (`USER_HZ`).
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Percentile of sorted nanoseconds, in microseconds.
fn pct_us(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(f64::from(sorted[i]) / 1e3)
}

fn ns32(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Timing of one measured window: warm-up first, then `secs`.
#[derive(Clone, Copy)]
struct Window {
    warm: Duration,
    dur: Duration,
    client_cpu: usize,
    server_cpu: usize,
}

/// What the client side of a transactional test brings back.
#[derive(Default)]
struct Timed {
    lat: Vec<u32>,
    connect: Vec<u32>,
    errors: u64,
    elapsed: f64,
    cpu_busy: u64,
}

/// CPUs the client and the server are pinned to.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct Cpus {
    pub client: usize,
    pub server: usize,
}

/// Runs `test` between `ends` for `secs` seconds (after a 0.3 s warm-up).
///
/// # Errors
/// Sockets that cannot be made, a server that is not reachable, an address outside the lab's.
pub fn run(test: Test, ends: &Ends, secs: f64, cpus: Cpus, stop: &AtomicBool) -> io::Result<Run> {
    check_addr(ends.target)?;
    check_addr(ends.bind)?;
    let w = Window {
        warm: Duration::from_millis(300),
        dur: Duration::from_secs_f64(secs.max(0.05)),
        client_cpu: cpus.client,
        server_cpu: cpus.server,
    };
    let tps = ticks_per_sec();
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
        Test::Rr => tcp_rr(ends, w, stop).map(finish),
        Test::Crr => tcp_crr(ends, w, stop).map(finish),
        Test::UdpRr => udp_rr(ends, w, stop).map(finish),
        Test::Stream => tcp_stream(ends, w, stop, tps),
    }
}

/// A listener in the server's namespace whose `accept()` gives up after 200 ms (so the
/// server thread can notice the end).
fn listen(ends: &Ends, port: u16) -> io::Result<TcpListener> {
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
fn measure(
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

fn join<T>(h: std::thread::JoinHandle<io::Result<T>>, what: &str) -> io::Result<T> {
    h.join()
        .map_err(|_| io::Error::other(format!("{what} panicked")))?
}

fn tcp_rr(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Timed> {
    let port = Test::Rr.port();
    let listener = listen(ends, port)?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        pin(w.server_cpu);
        let mut s = accept_one(&listener)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let target = ends.target(Test::Rr);
    let client = run_in(&ends.client_ns, || -> io::Result<Timed> {
        pin(w.client_cpu);
        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = [0x33u8; 64];
        let t = measure(w, stop, || {
            let t0 = Instant::now();
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
            Ok((t0.elapsed(), None))
        });
        let _ = c.shutdown(Shutdown::Both);
        t
    });
    let server = join(server, "rr server");
    let client = client??;
    server?;
    Ok(client)
}

/// The first connection within 5 s (the listener's `accept()` times out every 200 ms).
fn accept_one(listener: &TcpListener) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok((s, _)) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => {}
        }
    }
}

fn tcp_crr(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Timed> {
    let port = Test::Crr.port();
    let listener = listen(ends, port)?;
    let done = Arc::new(AtomicBool::new(false));
    let d2 = Arc::clone(&done);
    let server = std::thread::spawn(move || -> io::Result<()> {
        pin(w.server_cpu);
        while !d2.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                continue;
            };
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0u8; 64];
            if s.read_exact(&mut buf).is_ok() {
                let _ = s.write_all(&buf);
                // Wait for the client's close (an RST), so it is the one that ends it.
                let _ = s.read(&mut buf);
            }
        }
        Ok(())
    });
    let target = ends.target(Test::Crr);
    let client = run_in(&ends.client_ns, || -> io::Result<Timed> {
        pin(w.client_cpu);
        measure(w, stop, || {
            let t0 = Instant::now();
            let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
            let tc = t0.elapsed();
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0x44u8; 64];
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
            socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO))?;
            drop(c);
            Ok((t0.elapsed(), Some(tc)))
        })
    });
    done.store(true, Ordering::Relaxed);
    let server = join(server, "crr server");
    let client = client??;
    server?;
    Ok(client)
}

fn udp_rr(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Timed> {
    let port = Test::UdpRr.port();
    let bind = SocketAddr::new(ends.bind, port);
    let srv = run_in(&ends.server_ns, move || UdpSocket::bind(bind))??;
    srv.set_read_timeout(Some(Duration::from_millis(100)))?;
    let done = Arc::new(AtomicBool::new(false));
    let d2 = Arc::clone(&done);
    let server = std::thread::spawn(move || -> io::Result<()> {
        pin(w.server_cpu);
        let mut buf = [0u8; 64];
        while !d2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = srv.recv_from(&mut buf) {
                srv.send_to(&buf[..n], from)?;
            }
        }
        Ok(())
    });
    let target = ends.target(Test::UdpRr);
    let client = run_in(&ends.client_ns, || -> io::Result<Timed> {
        pin(w.client_cpu);
        let c = UdpSocket::bind(crate::traffic::any_addr(target))?;
        c.connect(target)?;
        c.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut seq = 0u64;
        measure(w, stop, || {
            seq += 1;
            let mut buf = [0x55u8; 64];
            buf[..8].copy_from_slice(&seq.to_le_bytes());
            let t0 = Instant::now();
            c.send(&buf)?;
            // A late answer to an earlier (timed-out) request is skipped.
            loop {
                let n = c.recv(&mut buf)?;
                if n >= 8 && buf[..8] == seq.to_le_bytes() {
                    return Ok((t0.elapsed(), None));
                }
            }
        })
    });
    done.store(true, Ordering::Relaxed);
    let server = join(server, "udp-rr server");
    let client = client??;
    server?;
    Ok(client)
}

fn tcp_stream(ends: &Ends, w: Window, stop: &AtomicBool, tps: f64) -> io::Result<Run> {
    let port = Test::Stream.port();
    let listener = listen(ends, port)?;
    let bytes = Arc::new(AtomicU64::new(0));
    let b2 = Arc::clone(&bytes);
    let server = std::thread::spawn(move || -> io::Result<()> {
        pin(w.server_cpu);
        let mut s = accept_one(&listener)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    b2.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    });
    let target = ends.target(Test::Stream);
    let total = w.warm + w.dur + Duration::from_millis(100);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop_flag);
    let sender = spawn_in(&ends.client_ns, move || -> io::Result<()> {
        pin(w.client_cpu);
        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        c.set_write_timeout(Some(Duration::from_secs(3)))?;
        let buf = vec![0x66u8; 128 << 10];
        let end = Instant::now() + total;
        while Instant::now() < end && !s2.load(Ordering::Relaxed) {
            c.write_all(&buf)?;
        }
        let _ = c.shutdown(Shutdown::Both);
        Ok(())
    })?;
    std::thread::sleep(w.warm);
    let (c0, (k0, _)) = (bytes.load(Ordering::Relaxed), cpu_ticks());
    let t0 = Instant::now();
    let end = t0 + w.dur;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(
            Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
        );
    }
    let (c1, (k1, _)) = (bytes.load(Ordering::Relaxed), cpu_ticks());
    let el = t0.elapsed().as_secs_f64();
    stop_flag.store(true, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("stream sender panicked"))?;
    let server = join(server, "stream server");
    sent??;
    server?;
    let mib = (c1 - c0) as f64 / f64::from(1u32 << 20);
    Ok(Run {
        rate: (c1 - c0) as f64 * 8.0 / el / 1e9,
        ops: mib,
        cpu_us_per_op: (k1.saturating_sub(k0)) as f64 / tps * 1e6 / mib.max(1e-9),
        ..Run::default()
    })
}
