//! Bounded traffic between namespaces, for the demo, the tests and the benchmarks. Every
//! generator stops by itself after a fixed count or time and refuses addresses outside
//! 198.18.0.0/15 and loopback.
use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use crate::sys::netns::run_in;

pub use crate::net::check_traffic_addr as check_addr;

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `count` ICMP echo requests from namespace `ns` to `dst` (one at a time, each waiting
/// up to `timeout` for its reply). Returns how many replies came back.
///
/// Uses an ICMP datagram ("ping") socket when the namespace's `ping_group_range` allows it:
/// the reply is then delivered to that socket. With a raw socket the kernel also hands the
/// reply to ICMP, finds no ping socket and drops it (reason `NO_SOCKET`), which is true but
/// noisy when the point is to show drops.
pub fn ping(ns: &Path, dst: Ipv4Addr, count: u16, timeout: Duration) -> io::Result<u16> {
    use socket2::{Domain, Protocol, Socket, Type};
    check_addr(IpAddr::V4(dst))?;
    run_in(ns, move || -> io::Result<u16> {
        let (sock, raw) = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
            Ok(s) => (s, false),
            Err(_) => (
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
                true,
            ),
        };
        echo_loop(&sock, raw, dst, count, timeout)
    })?
}

fn echo_loop(
    sock: &socket2::Socket,
    raw: bool,
    dst: Ipv4Addr,
    count: u16,
    timeout: Duration,
) -> io::Result<u16> {
    use std::io::Read as _;
    sock.set_read_timeout(Some(timeout))?;
    let to = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0));
    // A ping socket replaces the id with its own and matches replies itself.
    let id = (std::process::id() & 0xffff) as u16;
    let mut replies = 0;
    for seq in 0..count {
        let mut pkt = [0u8; 64];
        pkt[0] = 8;
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        sock.send_to(&pkt, &to)?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            let Ok(n) = (&*sock).read(&mut buf) else {
                break;
            };
            let ihl = if raw {
                usize::from(buf[0] & 0x0f) * 4
            } else {
                0
            };
            let id_ok = !raw || buf[ihl + 4..ihl + 6] == id.to_be_bytes();
            if n >= ihl + 8 && buf[ihl] == 0 && id_ok && buf[ihl + 6..ihl + 8] == seq.to_be_bytes()
            {
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}

/// A TCP server in `server_ns` accepting one connection, a client in `client_ns` sending
/// `bytes` bytes and reading a 4-byte acknowledgement. Returns bytes the server received.
pub fn tcp_transfer(
    server_ns: &Path,
    client_ns: &Path,
    addr: SocketAddr,
    bytes: usize,
) -> io::Result<u64> {
    check_addr(addr.ip())?;
    let listener = run_in(server_ns, move || TcpListener::bind(addr))??;
    listener.set_nonblocking(false)?;
    let server = std::thread::spawn(move || -> io::Result<u64> {
        // Bounded: the accept must come within 10 s (the client runs right after).
        let deadline = Instant::now() + Duration::from_secs(10);
        listener.set_nonblocking(true)?;
        let (mut s, _) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        s.write_all(&(total as u32).to_be_bytes())?;
        Ok(total)
    });
    let client = run_in(client_ns, move || -> io::Result<()> {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        let chunk = vec![0x5au8; 16 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            c.write_all(&chunk[..n])?;
            left -= n;
        }
        c.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 4];
        c.read_exact(&mut ack)?;
        // Wait for the server's FIN so the whole exchange is over when we return.
        let mut rest = [0u8; 1];
        let _ = c.read(&mut rest);
        Ok(())
    })?;
    let got = server
        .join()
        .map_err(|_| io::Error::other("tcp server panicked"))??;
    client?;
    Ok(got)
}

/// The wildcard address of `addr`'s family, any port: where a client socket binds.
#[must_use]
pub fn any_addr(addr: SocketAddr) -> SocketAddr {
    let ip = if addr.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    };
    SocketAddr::new(ip, 0)
}

/// Sends `count` UDP datagrams of `size` bytes from `client_ns` to `addr`, with nobody
/// necessarily listening (a closed port makes the kernel drop them: `NO_SOCKET`).
pub fn udp_send(client_ns: &Path, addr: SocketAddr, count: u32, size: usize) -> io::Result<()> {
    check_addr(addr.ip())?;
    run_in(client_ns, move || -> io::Result<()> {
        let s = UdpSocket::bind(any_addr(addr))?;
        let payload = vec![0x3cu8; size];
        for _ in 0..count {
            // ICMP port-unreachable replies surface as errors on later sends: expected here.
            let _ = s.send_to(&payload, addr);
        }
        Ok(())
    })?
}

/// One UDP datagram of `size` bytes from `client_ns` to each port of `ports` at `ip` (nobody
/// need listen): as many flows as ports, paced so no queue overflows.
pub fn udp_ports(
    client_ns: &Path,
    ip: IpAddr,
    ports: std::ops::Range<u16>,
    size: usize,
) -> io::Result<()> {
    check_addr(ip)?;
    run_in(client_ns, move || -> io::Result<()> {
        let s = UdpSocket::bind(any_addr(SocketAddr::new(ip, 0)))?;
        let payload = vec![0x5au8; size];
        for (i, port) in ports.enumerate() {
            // ICMP port-unreachable replies surface as errors on later sends: expected here.
            let _ = s.send_to(&payload, SocketAddr::new(ip, port));
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    })?
}

/// `count` UDP datagrams of `size` bytes from `client_ns` to a receiver in `server_ns`.
/// Returns how many arrived (the receiver stops 500 ms after the last one or at `count`).
pub fn udp_burst(
    server_ns: &Path,
    client_ns: &Path,
    addr: SocketAddr,
    count: u32,
    size: usize,
) -> io::Result<u32> {
    check_addr(addr.ip())?;
    let sock = run_in(server_ns, move || UdpSocket::bind(addr))??;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let rx = std::thread::spawn(move || {
        let mut got = 0u32;
        let mut buf = vec![0u8; 65536];
        while got < count {
            match sock.recv(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        got
    });
    run_in(client_ns, move || -> io::Result<()> {
        let s = UdpSocket::bind(any_addr(addr))?;
        let payload = vec![0xa5u8; size];
        for i in 0..count {
            s.send_to(&payload, addr)?;
            // Pace bursts a little so the receiver's socket buffer never overflows.
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    })??;
    rx.join()
        .map_err(|_| io::Error::other("udp receiver panicked"))
}
