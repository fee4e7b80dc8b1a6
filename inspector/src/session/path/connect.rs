//! The connection itself: one bounded probe (TCP connect + a line + close; UDP one datagram
//! and one read) from inside the source's namespace, or the next real one seen at a hook.
use std::{
    collections::HashSet,
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use super::{PathError, Verdict, target::Source};
use crate::{
    flows::Tuple,
    net::Proto,
    session::{Session, SessionError},
};

/// What the connection saw.
pub(super) struct Seen {
    pub local: Option<SocketAddr>,
    pub verdict: Verdict,
    pub detail: String,
    /// How long the connect took, when it completed.
    pub connected_ms: Option<f64>,
}

/// Delivered, refused, unreachable or no answer, from a socket error.
fn classify(e: &std::io::Error, timeout: Duration) -> (Verdict, String) {
    use nix::errno::Errno;
    let no_answer = || {
        (
            Verdict::NoAnswer,
            format!("no answer within {:.1} s", timeout.as_secs_f64()),
        )
    };
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ECONNREFUSED) => (
            Verdict::Refused,
            "connection refused (TCP RST or ICMP port unreachable)".into(),
        ),
        Some(Errno::EHOSTUNREACH | Errno::ENETUNREACH) => (Verdict::Unreachable, e.to_string()),
        Some(Errno::ETIMEDOUT | Errno::EAGAIN | Errno::EINPROGRESS) => no_answer(),
        _ if e.kind() == std::io::ErrorKind::TimedOut => no_answer(),
        _ => (Verdict::Error, e.to_string()),
    }
}

/// One bounded connection from inside `netns`.
pub(super) fn probe(
    netns: &Path,
    proto: Proto,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<Seen, SessionError> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let tcp = proto == Proto::Tcp;
    let run = move || -> std::io::Result<Seen> {
        let domain = if dst.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = if tcp {
            Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?
        } else {
            Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?
        };
        // The source address the route gives (a connected UDP socket sends nothing), bound
        // explicitly so the tuple is known even when the connect fails.
        let any: SocketAddr = if dst.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let route = std::net::UdpSocket::bind(any)?;
        route.connect(dst)?;
        let src_ip = route.local_addr()?.ip();
        drop(route);
        sock.bind(&SockAddr::from(SocketAddr::new(src_ip, 0)))?;
        let local = sock.local_addr()?.as_socket();
        let started = Instant::now();
        let mut connected_ms = None;
        let (verdict, detail) = if tcp {
            match sock.connect_timeout(&SockAddr::from(dst), timeout) {
                Ok(()) => {
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    connected_ms = Some(ms);
                    let mut st: std::net::TcpStream = sock.into();
                    let _ = st.set_read_timeout(Some(Duration::from_millis(300)));
                    let _ = st.write_all(b"inspector path probe\n");
                    let _ = st.shutdown(std::net::Shutdown::Write);
                    let mut buf = [0u8; 256];
                    let _ = st.read(&mut buf);
                    (Verdict::Delivered, format!("connected in {ms:.2} ms"))
                }
                Err(e) => classify(&e, timeout),
            }
        } else {
            sock.connect(&SockAddr::from(dst))?;
            sock.set_read_timeout(Some(timeout))?;
            let u: std::net::UdpSocket = sock.into();
            u.send(b"inspector path probe\n")?;
            let mut buf = [0u8; 512];
            match u.recv(&mut buf) {
                Ok(n) => (Verdict::Delivered, format!("answered with {n} bytes")),
                Err(e) => classify(&e, timeout),
            }
        };
        Ok(Seen {
            local,
            verdict,
            detail,
            connected_ms,
        })
    };
    crate::sys::netns::run_in(netns, run)
        .and_then(|r| r)
        .map_err(|e| PathError::Connect(e).into())
}

/// `--watch`: the first new connection from the source's addresses (or any, for a bare
/// namespace) to `dst` seen at a hook, judged by whether a reply was seen.
pub(super) fn watch(
    s: &Session,
    src: &Source,
    dst: SocketAddr,
    proto: Proto,
    timeout: Duration,
    ready: impl FnOnce() -> Result<(), SessionError>,
    pump: &mut dyn FnMut(&Session) -> Result<(), SessionError>,
) -> Result<Seen, SessionError> {
    let old: HashSet<Tuple> = s
        .flows()?
        .iter()
        .filter_map(|f| f.rec.hdr.tuple())
        .collect();
    ready()?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        pump(s)?;
        let flows = s.flows()?;
        let Some(f) = flows.iter().find(|f| {
            let r = &f.rec;
            r.hdr.proto == proto
                && r.hdr.dst == Some(dst.ip())
                && r.hdr.dport == Some(dst.port())
                && r.hdr.tuple().is_some_and(|k| !old.contains(&k))
                && (src.ips.is_empty() || r.hdr.src.is_some_and(|s| src.ips.contains(&s)))
        }) else {
            continue;
        };
        // Give the connection time to complete, then judge it from what was seen.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            pump(s)?;
        }
        let r = &f.rec;
        let local = r
            .hdr
            .src
            .zip(r.hdr.sport)
            .map(|(ip, p)| SocketAddr::new(ip, p));
        let answered = s.flows()?.iter().any(|x| {
            x.rec.hdr.dst == r.hdr.src
                && x.rec.hdr.dport == r.hdr.sport
                && (x.rec.hdr.src == Some(dst.ip()) || x.service.is_some())
        });
        let (verdict, detail) = if answered {
            (Verdict::Delivered, "a reply was seen")
        } else {
            (Verdict::NoAnswer, "no reply seen within 0.5 s")
        };
        return Ok(Seen {
            local,
            verdict,
            detail: detail.into(),
            connected_ms: None,
        });
    }
    Err(PathError::NothingSeen {
        proto,
        dst,
        secs: timeout.as_secs_f64(),
    }
    .into())
}
