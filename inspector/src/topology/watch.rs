//! Link and address changes as the kernel announces them, so a follower rescans when
//! something changed instead of waiting for its timer. One rtnetlink socket in this (the
//! root) namespace, subscribed to the link, IPv4/IPv6 address and nsid groups with
//! `NETLINK_LISTEN_ALL_NSID`: it hears every namespace this one has an id for - each that a
//! veth links to it, as Docker's and CNI's do - without entering or holding any namespace
//! (a socket inside a namespace would keep it alive after its last user left). Namespaces
//! linked only to other namespaces (a lab's node) are not heard; the periodic rescan stays
//! as the safety net. Hand-written: a bind, two socket options and a drain are all it needs,
//! and the message contents are not read (a rescan reads the state).
use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTNLGRP_NSID: libc::c_int = 28;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;

/// The subscription; dropping it closes the socket.
pub struct LinkWatch {
    sock: OwnedFd,
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl LinkWatch {
    /// Subscribes in the calling thread's namespace.
    ///
    /// # Errors
    /// The socket cannot be made or bound (no rtnetlink?).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket call; the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        check(fd)?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = u16::try_from(libc::AF_NETLINK).unwrap_or(16);
        sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or(12);
        // SAFETY: sa lives across the call; len is its size.
        check(unsafe { libc::bind(fd, std::ptr::from_ref(&sa).cast(), len) })?;
        let on: libc::c_int = 1;
        let opt = |name: libc::c_int, v: &libc::c_int| -> io::Result<()> {
            let l = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
            // SAFETY: v lives across the call; l is its size.
            check(unsafe {
                libc::setsockopt(fd, SOL_NETLINK, name, std::ptr::from_ref(v).cast(), l)
            })
        };
        opt(NETLINK_ADD_MEMBERSHIP, &RTNLGRP_NSID)?;
        // Without it only this namespace is heard: still worth having.
        let _ = opt(NETLINK_LISTEN_ALL_NSID, &on);
        Ok(Self { sock })
    }

    /// Reads every pending announcement; whether there was any (an overrun counts: something
    /// changed that was not read).
    #[must_use]
    pub fn changed(&self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let mut any = false;
        loop {
            // SAFETY: buf is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }
}

impl AsFd for LinkWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
