//! A device that moved to another namespace with our TCX links on it. Docker (and CNI
//! plugins) make a veth pair in the node's namespace, then move one end into the container
//! and rename it `eth0`. A rescan in between attaches to that end in the node's namespace;
//! the TCX links move with the device (a namespace change shuts down its qdiscs, and with them
//! legacy tc filters, but not TCX), so attaching again in its new namespace is refused
//! (`EEXIST`), and letting the old key go would detach them. Instead the attachment is
//! re-keyed: the links' own info says whether they are still on a live device, and which.
//!
//! `BPF_OBJ_GET_INFO_BY_FD` is called directly: aya exposes no link info for links it did not
//! create (ours are made with `BPF_LINK_CREATE` in `attach`).
use std::os::fd::{AsRawFd as _, OwnedFd};

use super::{AttachKey, Probe};

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `info` part of `union bpf_attr`.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The device a TCX link is on (`bpf_link_info.tcx.ifindex`, at byte 16), 0 once the
/// device is gone; `None` if the kernel does not say.
fn tcx_ifindex(link: &OwnedFd) -> Option<u32> {
    let mut info = [0u64; 8];
    let attr = InfoByFd {
        bpf_fd: u32::try_from(link.as_raw_fd()).ok()?,
        info_len: u32::try_from(std::mem::size_of_val(&info)).ok()?,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: bpf(2) writes at most `info_len` bytes to `info`, which lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw const attr,
            std::mem::size_of::<InfoByFd>(),
        )
    };
    // `info[2]` holds bytes 16..24: the tcx ifindex, then its attach type.
    (r == 0).then(|| (info[2] & 0xffff_ffff) as u32)
}

impl Probe {
    /// Whether (namespace, ifindex) is attached.
    #[must_use]
    pub fn is_attached(&self, key: AttachKey) -> bool {
        self.links.contains_key(&key)
    }

    /// Where the device of a gone attachment is now, if it lives: the ifindex its TCX links
    /// are on (a device that moved to another namespace, or `None`: gone, or not TCX).
    #[must_use]
    pub fn moved_to(&self, from: AttachKey) -> Option<u32> {
        let pair = self.links.get(&from)?;
        let at = tcx_ifindex(pair.links.first()?)?;
        (at != 0 && pair.links.iter().all(|l| tcx_ifindex(l) == Some(at))).then_some(at)
    }

    /// Files the attachment of `from` under `to` (its device moved there: [`Self::moved_to`])
    /// and tells the programs its namespace.
    pub fn adopt_moved(&mut self, from: AttachKey, to: AttachKey) {
        if self.links.contains_key(&to) {
            return;
        }
        let Some(pair) = self.links.remove(&from) else {
            return;
        };
        self.links.insert(to, pair);
        self.set_attached(from.0, from.1, false);
        self.set_attached(to.0, to.1, true);
        for ifindex in [from.1, to.1] {
            let v = self.ifns_value(ifindex, &[]);
            let _ = self.set_ifns(ifindex, v);
        }
    }
}
