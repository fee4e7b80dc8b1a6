//! Legacy tc attach, for kernels without TCX (before 6.6) or when `--attach tc` asks for it:
//! a `clsact` qdisc and a `cls_bpf` filter in direct-action mode on each hook, over rtnetlink.
//!
//! Placement: priority 1 (the first a filter can have), protocol `all`, kind `bpf`. The
//! kernel runs a hook's filters by ascending priority, and a new `cls_bpf` program of an
//! existing priority goes to the head of that priority's list, so ours runs before every
//! other filter of the hook - also before Cilium's (priority 1, handle 1, `bpf`, protocol
//! `all`: ours joins that list ahead of it). It returns `TC_ACT_UNSPEC` ("continue"), so the
//! next filter sees the packet as if we were not there. If priority 1 already holds a filter
//! of another kind or protocol (a `u32` or `flower` there), the kernel refuses ours: the
//! interface is then not attached and the error says so, rather than running after it.
//!
//! Identity: unlike TCX links, filters outlive the process. Ours are recognisable: kind
//! `bpf`, a program whose name starts with `insp_`, and a handle in `HANDLE_BASE..+0x10000`
//! (each inspector running picks the first free handle there). A `clsact` qdisc the inspector
//! had to create is recorded in `STATE_DIR` (on /run, a tmpfs: gone with the qdiscs at a
//! reboot), so that it is removed only if we created it and no filter is left on it.
use std::{io, path::PathBuf};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption},
};

use super::rtnl::request;

/// First handle of ours.
pub const HANDLE_BASE: u32 = 0x1e5f_0000;
/// Handles of ours: `HANDLE_BASE` to `HANDLE_BASE + HANDLES - 1`.
pub const HANDLES: u32 = 0x1_0000;
/// The priority of our filters.
pub const PRIORITY: u16 = 1;
/// Programs of ours carry this name prefix (tc shows it as the filter's name).
pub const NAME_PREFIX: &str = "insp_";
/// Where the qdiscs the inspector created are recorded (one file per interface).
pub const STATE_DIR: &str = "/run/inspector/clsact";
const ETH_P_ALL: u16 = 0x0003;

/// Ingress or egress of an interface's `clsact` qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub const BOTH: [Self; 2] = [Self::Ingress, Self::Egress];

    fn parent(self) -> TcHandle {
        TcHandle {
            major: 0xffff,
            minor: match self {
                Self::Ingress => TcHandle::MIN_INGRESS,
                Self::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// A `bpf` filter as the kernel lists it.
#[derive(Clone, Debug)]
pub struct Filter {
    pub ifindex: u32,
    pub hook: Hook,
    pub priority: u16,
    pub handle: u32,
    /// The program's name (`TCA_BPF_NAME`), empty for classic BPF.
    pub name: String,
    /// The program's id, 0 if not said (classic BPF).
    pub prog_id: u32,
}

impl Filter {
    /// One of ours: our priority, a handle in our range, our program name prefix.
    #[must_use]
    pub fn ours(&self) -> bool {
        self.priority == PRIORITY
            && self.handle.wrapping_sub(HANDLE_BASE) < HANDLES
            && self.name.starts_with(NAME_PREFIX)
    }
}

fn filter_msg(ifindex: u32, hook: Hook, handle: u32) -> TcMessage {
    let mut m = TcMessage::from_parts(
        TcHeader {
            index: i32::try_from(ifindex).unwrap_or(0),
            handle: TcHandle::from(handle),
            parent: hook.parent(),
            info: u32::from(PRIORITY) << 16 | u32::from(ETH_P_ALL.to_be()),
            ..TcHeader::default()
        },
        Vec::new(),
    );
    m.attributes.push(TcAttribute::Kind("bpf".into()));
    m
}

/// Adds the `clsact` qdisc if the interface has none. True if this call created it.
pub fn ensure_clsact(ifindex: u32) -> io::Result<bool> {
    let mut m = TcMessage::with_index(i32::try_from(ifindex).unwrap_or(0));
    m.header.parent = TcHandle::CLSACT;
    m.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    m.attributes.push(TcAttribute::Kind("clsact".into()));
    match request(
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the interface has a `clsact` qdisc.
pub fn has_clsact(ifindex: u32) -> io::Result<bool> {
    let mut m = TcMessage::with_index(i32::try_from(ifindex).unwrap_or(0));
    m.header.parent = TcHandle::CLSACT;
    let all = request(RouteNetlinkMessage::GetQueueDiscipline(m), NLM_F_DUMP)?;
    Ok(all.iter().any(|q| match q {
        RouteNetlinkMessage::NewQueueDiscipline(q) => {
            u32::try_from(q.header.index).ok() == Some(ifindex)
                && q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"))
        }
        _ => false,
    }))
}

/// Interfaces of this namespace that have a `clsact` qdisc.
pub fn clsact_interfaces() -> io::Result<Vec<u32>> {
    let m = TcMessage::with_index(0);
    let all = request(RouteNetlinkMessage::GetQueueDiscipline(m), NLM_F_DUMP)?;
    let mut out: Vec<u32> = all
        .iter()
        .filter_map(|q| match q {
            RouteNetlinkMessage::NewQueueDiscipline(q)
                if q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact")) =>
            {
                u32::try_from(q.header.index).ok()
            }
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Deletes the `clsact` qdisc (and with it any filter left on it).
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    let mut m = TcMessage::with_index(i32::try_from(ifindex).unwrap_or(0));
    m.header.parent = TcHandle::CLSACT;
    m.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    request(RouteNetlinkMessage::DelQueueDiscipline(m), 0).map(|_| ())
}

/// Attaches `prog_fd` (named `name`) first on `hook`, with the first free handle of ours.
/// Returns the handle.
pub fn add_filter(ifindex: u32, hook: Hook, prog_fd: i32, name: &str) -> io::Result<u32> {
    for slot in 0..HANDLES {
        let handle = HANDLE_BASE + slot;
        let mut m = filter_msg(ifindex, hook, handle);
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(
                u32::try_from(prog_fd).map_err(io::Error::other)?,
            )),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_owned())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        match request(
            RouteNetlinkMessage::NewTrafficFilter(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => return Ok(handle),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "tc priority {PRIORITY} of the {} hook holds a filter of another kind \
                         or protocol, so ours cannot run first ({e})",
                        hook.name()
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("every handle of ours is taken"))
}

/// Deletes one filter. A filter already gone (its interface too) is not an error.
pub fn delete_filter(ifindex: u32, hook: Hook, priority: u16, handle: u32) -> io::Result<()> {
    let mut m = filter_msg(ifindex, hook, handle);
    m.header.info = u32::from(priority) << 16 | u32::from(ETH_P_ALL.to_be());
    match request(RouteNetlinkMessage::DelTrafficFilter(m), 0) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Every filter on one hook of an interface (any kind: a non-`bpf` one has no name or id).
pub fn filters(ifindex: u32, hook: Hook) -> io::Result<Vec<Filter>> {
    let mut m = TcMessage::with_index(i32::try_from(ifindex).unwrap_or(0));
    m.header.parent = hook.parent();
    let all = match request(RouteNetlinkMessage::GetTrafficFilter(m), NLM_F_DUMP) {
        Ok(a) => a,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for f in all {
        let RouteNetlinkMessage::NewTrafficFilter(f) = f else {
            continue;
        };
        // A priority's list heads with an entry of handle 0 (the classifier itself).
        let handle = u32::from(f.header.handle);
        if handle == 0 {
            continue;
        }
        let (mut name, mut prog_id) = (String::new(), 0);
        for a in &f.attributes {
            if let TcAttribute::Options(opts) = a {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name.clone_from(n),
                        TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => prog_id = *i,
                        _ => {}
                    }
                }
            }
        }
        out.push(Filter {
            ifindex,
            hook,
            priority: u16::try_from(f.header.info >> 16).unwrap_or(0),
            handle,
            name,
            prog_id,
        });
    }
    Ok(out)
}

/// The record of a `clsact` qdisc the inspector created on (namespace, interface).
#[must_use]
pub fn state_file(netns: u64, ifindex: u32) -> PathBuf {
    PathBuf::from(STATE_DIR).join(format!("{netns}-{ifindex}"))
}

/// Records that we created the qdisc of (namespace, interface).
pub fn note_created(netns: u64, ifindex: u32) {
    let _ = std::fs::create_dir_all(STATE_DIR);
    let _ = std::fs::write(state_file(netns, ifindex), b"");
}

/// Removes the `clsact` qdisc of (namespace, interface) if the inspector created it and no
/// filter is left on it (ours or anyone's). Runs in that namespace. True if removed.
pub fn remove_clsact_if_ours(netns: u64, ifindex: u32) -> io::Result<bool> {
    let state = state_file(netns, ifindex);
    if !state.exists() {
        return Ok(false);
    }
    if !has_clsact(ifindex)? {
        let _ = std::fs::remove_file(&state);
        return Ok(false);
    }
    for hook in Hook::BOTH {
        if !filters(ifindex, hook)?.is_empty() {
            return Ok(false);
        }
    }
    delete_clsact(ifindex)?;
    let _ = std::fs::remove_file(&state);
    Ok(true)
}
