//! One synchronous rtnetlink exchange in the namespace of the calling thread: the legacy tc
//! attach runs on worker threads that have entered a namespace each, where an async runtime
//! per thread would only add weight. Messages are built and parsed by `netlink-packet-route`;
//! the socket lives only for the call (an open socket would keep its namespace alive).
use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A request the kernel never answers must not hang a worker.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let tv = libc::timeval {
        tv_sec: TIMEOUT.as_secs().try_into().unwrap_or(5),
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads a valid timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Sends `msg` with `flags` (plus REQUEST and ACK) and returns the replies: the dumped
/// messages for a dump, nothing for a change the kernel acknowledged. A netlink error comes
/// back as the `io::Error` of its errno (`EEXIST`, `ENOENT`, `EINVAL`...).
pub fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let sock = open()?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut &mut rx[..], 0)?;
        let mut at = 0;
        while at < n {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(out),
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    };
                }
                NetlinkPayload::Done(_) => return Ok(out),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
            if !dump && at >= n {
                break;
            }
        }
    }
}
