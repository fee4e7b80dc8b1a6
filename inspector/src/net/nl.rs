//! Raw netlink exchanges for the families no well-kept crate covers at our crate versions
//! (ctnetlink dumps, IPVS over generic netlink: `netlink-packet-ipvs` is a 0.0.1 on an older
//! `netlink-packet-core`, and we need two dumps and a family lookup). A request is built as
//! bytes (header + family header + attributes), the replies come back as the payload of each
//! message after its 16-byte header. The socket lives only for the call, in the calling
//! thread's namespace.
use std::io;

pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;

/// A request: netlink header for `ty` and `flags`, then `body` (family header and
/// attributes, already padded).
#[must_use]
pub fn message(ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let len = HEADER + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// Appends one attribute (type, value), padded to 4 bytes.
pub fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

/// The attributes in `b` as (type without flag bits, value); stops at a malformed one.
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, data))
    })
}

/// Sends `req` on a new socket of `protocol` and returns every reply's payload (after the
/// netlink header) until the dump is done or the request acknowledged. A netlink error comes
/// back as the `io::Error` of its errno.
pub fn exchange(protocol: isize, req: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let mut sock = netlink_sys::Socket::new(protocol)?;
    sock.bind_auto()?;
    sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(3, 0),
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    sock.send(req, 0)?;
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    loop {
        buf.clear();
        let n = sock.recv(&mut buf, 0)?;
        if let Some(end) = replies(&buf[..n.min(buf.len())], &mut out) {
            return end.map(|()| out);
        }
    }
}

/// Splits one datagram of replies: each message's payload (after the netlink header) is
/// pushed to `out`. `Some` once the exchange is over (the dump's end, an acknowledgement,
/// or the errno of an error); `None` while more is to come. A malformed message ends the
/// datagram.
pub fn replies(mut b: &[u8], out: &mut Vec<Vec<u8>>) -> Option<io::Result<()>> {
    while b.len() >= HEADER {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < HEADER || len > b.len() {
            break;
        }
        match ty {
            NLMSG_DONE => return Some(Ok(())),
            NLMSG_ERROR => {
                let Some(code) = b.get(HEADER..HEADER + 4).filter(|_| len >= HEADER + 4) else {
                    return Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a netlink error message too short for its errno",
                    )));
                };
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                return Some(if code == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(code.saturating_neg()))
                });
            }
            _ => out.push(b[HEADER..len].to_vec()),
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    None
}
