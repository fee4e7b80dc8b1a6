//! The three workloads of the overhead benchmark. Each runs for a fixed time between two lab
//! namespaces and returns one number (higher is better). All bounded in time; addresses are
//! checked by `traffic::check_addr`.
use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    sys::netns::{run_in, spawn_in},
    traffic::check_addr,
};

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// 64-byte UDP datagrams as fast as one sender can push them (sendmmsg): packets/s received.
    UdpSmall,
    /// TCP request/response, 64 bytes each way, one at a time: transactions/s.
    TcpRr,
    /// One TCP stream (iperf3): Gbit/s.
    TcpBulk,
}

impl Workload {
    pub const ALL: [Self; 3] = [Self::UdpSmall, Self::TcpRr, Self::TcpBulk];

    #[must_use]
    pub const fn unit(self) -> &'static str {
        match self {
            Self::UdpSmall => "pkt/s",
            Self::TcpRr => "trans/s",
            Self::TcpBulk => "Gbit/s",
        }
    }

    /// Packets per unit of the measured value (datagrams per datagram; request and response
    /// per transaction); None for bulk, whose cost is not per packet.
    #[must_use]
    pub const fn per_packet(self) -> Option<f64> {
        match self {
            Self::UdpSmall => Some(1.0),
            Self::TcpRr => Some(2.0),
            Self::TcpBulk => None,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::UdpSmall => "udp 64B",
            Self::TcpRr => "tcp rr",
            Self::TcpBulk => "tcp bulk",
        }
    }
}

/// Namespaces and address of one benchmark pair.
#[derive(Clone, Debug)]
pub struct Pair {
    pub client: PathBuf,
    pub server: PathBuf,
    pub server_ip: std::net::IpAddr,
}

pub fn run(w: Workload, p: &Pair, secs: f64, busy_poll: bool) -> io::Result<f64> {
    check_addr(p.server_ip)?;
    match w {
        Workload::UdpSmall => udp_small(p, secs, busy_poll),
        Workload::TcpRr => tcp_rr(p, secs),
        Workload::TcpBulk => tcp_bulk(p, secs),
    }
}

/// Pins the calling thread to one CPU (client on 0, server on 1 when there are two), so runs
/// are comparable: the sender's CPU carries the whole veth/bridge path.
pub(crate) fn pin(cpu: usize) {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

/// CPU for the server side.
pub(crate) const SERVER_CPU: usize = 1;
/// CPU for the client side.
pub(crate) const CLIENT_CPU: usize = 0;

/// Payload of the small-packet test.
const SMALL: usize = 64;
/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;

/// One `mmsghdr` per iovec (one buffer per datagram), for sendmmsg/recvmmsg. The iovecs must
/// outlive the headers.
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

fn udp_small(p: &Pair, secs: f64, busy_poll: bool) -> io::Result<f64> {
    let addr = SocketAddr::new(p.server_ip, 9100);
    let rx = run_in(&p.server, move || UdpSocket::bind(addr))??;
    let big: libc::c_int = 32 << 20;
    // SAFETY: setsockopt on a socket we own. RCVBUFFORCE lets root exceed rmem_max.
    unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const big).cast(),
            4,
        );
    }
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c2, s2) = (Arc::clone(&count), Arc::clone(&stop));
    let receiver = std::thread::spawn(move || {
        pin(SERVER_CPU);
        let mut bufs = vec![[0u8; 256]; BATCH];
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs = mmsg_headers(&mut iov);
        while !s2.load(Ordering::Relaxed) {
            // SAFETY: msgs/iov/bufs outlive the call; the socket has a receive timeout.
            let n = unsafe {
                libc::recvmmsg(
                    rx.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    // Busy-polling keeps the receiver's CPU from sleeping, so the sender
                    // never pays a wake-up IPI (costly in a VM): steadier numbers.
                    if busy_poll {
                        libc::MSG_DONTWAIT
                    } else {
                        libc::MSG_WAITFORONE
                    },
                    std::ptr::null_mut(),
                )
            };
            if n > 0 {
                c2.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    let dur = Duration::from_secs_f64(secs);
    let warm = Duration::from_millis(300);
    let sender = spawn_in(&p.client, move || -> io::Result<()> {
        pin(CLIENT_CPU);
        let s = UdpSocket::bind(crate::traffic::any_addr(addr))?;
        s.connect(addr)?;
        let payload = [0x5au8; SMALL];
        let mut iov: Vec<libc::iovec> = (0..BATCH)
            .map(|_| libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: SMALL,
            })
            .collect();
        let mut msgs = mmsg_headers(&mut iov);
        let end = Instant::now() + warm + dur + Duration::from_millis(100);
        while Instant::now() < end {
            // SAFETY: msgs/iov/payload outlive the call; the socket is connected.
            unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        }
        Ok(())
    })?;
    std::thread::sleep(warm);
    let c0 = count.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(dur);
    let c1 = count.load(Ordering::Relaxed);
    let el = t0.elapsed().as_secs_f64();
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"));
    stop.store(true, Ordering::Relaxed);
    receiver
        .join()
        .map_err(|_| io::Error::other("receiver panicked"))?;
    sent???;
    Ok((c1 - c0) as f64 / el)
}

fn tcp_rr(p: &Pair, secs: f64) -> io::Result<f64> {
    let addr = SocketAddr::new(p.server_ip, 9101);
    let listener = run_in(&p.server, move || TcpListener::bind(addr))??;
    let server = std::thread::spawn(move || -> io::Result<()> {
        pin(SERVER_CPU);
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; SMALL];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(_) => return Ok(()),
            }
        }
    });
    let dur = Duration::from_secs_f64(secs);
    let n = run_in(&p.client, move || -> io::Result<f64> {
        pin(CLIENT_CPU);
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0x33u8; SMALL];
        let warm_end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < warm_end {
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
        }
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < dur {
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
            n += 1;
        }
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    })??;
    server
        .join()
        .map_err(|_| io::Error::other("rr server panicked"))??;
    Ok(n)
}

/// Starts a program inside a namespace (setns in the child before exec).
pub fn command_in(ns: &Path, program: &str) -> io::Result<Command> {
    use std::os::unix::process::CommandExt as _;
    let file = std::fs::File::open(ns)?;
    let mut cmd = Command::new(program);
    // SAFETY: only async-signal-safe calls (setns) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

fn tcp_bulk(p: &Pair, secs: f64) -> io::Result<f64> {
    let ip = p.server_ip.to_string();
    let mut server = command_in(&p.server, "iperf3")?
        .args([
            "-s",
            "-1",
            "--forceflush",
            "-B",
            &ip,
            "-p",
            "9102",
            "-A",
            &SERVER_CPU.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // iperf3 prints "Server listening" once its socket is bound (--forceflush: unbuffered).
    let out = server
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no iperf3 stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(5)).is_err() {
        let _ = server.kill();
        let _ = server.wait();
        return Err(io::Error::other("iperf3 server did not start"));
    }
    let t = format!("{secs:.1}");
    let client = command_in(&p.client, "iperf3")?
        .args([
            "-c",
            &ip,
            "-p",
            "9102",
            "-t",
            &t,
            "-O",
            "0.3",
            "-J",
            "--connect-timeout",
            "3000",
            "-A",
            &CLIENT_CPU.to_string(),
        ])
        .output();
    // The one-off server exits after its client; if the client never came, stop it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = client?;
    if !client.status.success() {
        return Err(io::Error::other(format!(
            "iperf3 client failed: {} {}",
            String::from_utf8_lossy(&client.stdout),
            String::from_utf8_lossy(&client.stderr)
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&client.stdout).map_err(io::Error::other)?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| io::Error::other("iperf3 JSON without end.sum_received"))
}
