//! The UDP tests: udp-rr (one request and answer at a time, each timed), udp-flood
//! (64-byte datagrams as fast as one sender pushes them, counted at the receiver) and
//! udp-drops (the same flood to a closed port, counted by the kernel as it drops them).
//!
//! The flood calls `sendmmsg`/`recvmmsg` through `libc` directly: the message headers are
//! built once and reused on every call of the hot loop (a safe wrapper that allocates or
//! checks per call would be measured instead of the path).
use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Ends, Run, Timed, Window, cpu_ticks, join, measure};
use crate::{
    bench::LoadKind,
    sys::{
        cpu::pin,
        netns::{run_in, spawn_in},
    },
};

pub(super) fn rr(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Timed> {
    let port = ends.port(LoadKind::UdpRr);
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
    let target = ends.target(LoadKind::UdpRr);
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

/// Payload of the flood's datagrams.
const SMALL: usize = 64;
/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;

/// One `mmsghdr` per iovec (one buffer per datagram). The iovecs must outlive the headers.
fn mmsg_headers(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: a zeroed mmsghdr is a valid "no name, no control" header.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// The receiving side: counts datagrams until `stop`.
fn receive(rx: &UdpSocket, count: &AtomicU64, stop: &AtomicBool, busy_poll: bool) {
    let mut bufs = vec![[0u8; 256]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs = mmsg_headers(&mut iov);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: msgs/iov/bufs outlive the call; the socket has a receive timeout.
        let n = unsafe {
            libc::recvmmsg(
                rx.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                // Busy-polling keeps the receiver's CPU from sleeping, so the sender never
                // pays a wake-up IPI (costly in a VM): steadier numbers.
                if busy_poll {
                    libc::MSG_DONTWAIT
                } else {
                    libc::MSG_WAITFORONE
                },
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// The sending side: batches of datagrams until `end`.
fn send(s: &UdpSocket, end: Instant) {
    let payload = [0x5au8; SMALL];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: SMALL,
        })
        .collect();
    let mut msgs = mmsg_headers(&mut iov);
    while Instant::now() < end {
        // SAFETY: msgs/iov/payload outlive the call; the socket is connected.
        unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
    }
}

pub(super) fn flood(
    ends: &Ends,
    w: Window,
    stop: &AtomicBool,
    busy_poll: bool,
    tps: f64,
) -> io::Result<Run> {
    let bind = SocketAddr::new(ends.bind, ends.port(LoadKind::UdpFlood));
    let rx = run_in(&ends.server_ns, move || UdpSocket::bind(bind))??;
    // Root may exceed rmem_max: a deep queue, so the receiver's wake-ups lose nothing.
    nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20))
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (c2, d2) = (Arc::clone(&count), Arc::clone(&done));
    let receiver = std::thread::spawn(move || {
        pin(w.server_cpu);
        receive(&rx, &c2, &d2, busy_poll);
    });
    let sender = sender(ends, w, LoadKind::UdpFlood)?;
    let counted = window(w, stop, || Ok(count.load(Ordering::Relaxed)));
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("flood sender panicked"));
    done.store(true, Ordering::Relaxed);
    receiver
        .join()
        .map_err(|_| io::Error::other("flood receiver panicked"))?;
    sent???;
    Ok(counted?.run(tps))
}

/// The flood's sender: a thread in the client's namespace, pinned, sending to the
/// workload's port until the window (warm-up included) is over.
fn sender(
    ends: &Ends,
    w: Window,
    kind: LoadKind,
) -> io::Result<std::thread::JoinHandle<io::Result<io::Result<()>>>> {
    let target = ends.target(kind);
    let end = Instant::now() + w.warm + w.dur + Duration::from_millis(100);
    spawn_in(&ends.client_ns, move || -> io::Result<()> {
        pin(w.client_cpu);
        let s = UdpSocket::bind(crate::traffic::any_addr(target))?;
        s.connect(target)?;
        send(&s, end);
        Ok(())
    })
}

/// What a counter moved by over the measured window (after the warm-up), with the CPU
/// ticks spent meanwhile.
struct Counted {
    got: u64,
    secs: f64,
    ticks: u64,
}

impl Counted {
    fn run(&self, tps: f64) -> Run {
        #[expect(clippy::cast_precision_loss, reason = "packet and tick counts")]
        let (got, busy) = (self.got as f64, self.ticks as f64);
        Run {
            rate: got / self.secs,
            ops: got,
            cpu_us_per_op: busy / tps * 1e6 / got.max(1.0),
            ..Run::default()
        }
    }
}

/// Waits out the warm-up, then reads `counter` before and after the window.
fn window(
    w: Window,
    stop: &AtomicBool,
    counter: impl Fn() -> io::Result<u64>,
) -> io::Result<Counted> {
    std::thread::sleep(w.warm);
    let (c0, (k0, _)) = (counter()?, cpu_ticks());
    let t0 = Instant::now();
    while t0.elapsed() < w.dur && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20).min(w.dur.saturating_sub(t0.elapsed())));
    }
    let (c1, (k1, _)) = (counter()?, cpu_ticks());
    Ok(Counted {
        got: c1.saturating_sub(c0),
        secs: t0.elapsed().as_secs_f64(),
        ticks: k1.saturating_sub(k0),
    })
}

/// The server namespace's `Udp NoPorts` (datagrams dropped for want of a socket), read from
/// a thread inside it (`/proc/thread-self/net` is the thread's namespace's).
fn no_ports(ends: &Ends) -> io::Result<u64> {
    let snmp = run_in(&ends.server_ns, || {
        std::fs::read_to_string("/proc/thread-self/net/snmp")
    })??;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next(), udp.next());
    names
        .zip(values)
        .and_then(|(n, v)| {
            let i = n.split_whitespace().position(|c| c == "NoPorts")?;
            v.split_whitespace().nth(i)?.parse().ok()
        })
        .ok_or_else(|| io::Error::other("no Udp NoPorts in /proc/net/snmp"))
}

/// The flood to a port nobody listens on: the rate is how many the receiving stack dropped
/// per second, by its own count.
pub(super) fn drops(ends: &Ends, w: Window, stop: &AtomicBool, tps: f64) -> io::Result<Run> {
    // A port-unreachable answer fails one call now and then; `send` carries on.
    let sender = sender(ends, w, LoadKind::UdpDrops)?;
    let counted = window(w, stop, || no_ports(ends));
    sender
        .join()
        .map_err(|_| io::Error::other("drop-storm sender panicked"))???;
    Ok(counted?.run(tps))
}
