//! pcap-filter expressions in the kernel (see `inspector_common::pcap`): the packet's first
//! bytes go to a per-CPU scratch buffer, and the placeholder subprogram, which userspace has
//! overwritten with the translated expression, says whether the packet is wanted. Only
//! reached when an expression is set (`FLAG_PCAP`, a load-time constant): otherwise the
//! verifier prunes the call and removes the placeholder.
use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_skb_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use core::ffi::c_void;
use inspector_common::pcap::{Scratch, VIEW};

#[map(name = "inspector_pcap")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const ETH_ALEN2: u32 = 12;

/// The placeholder: `SLOTS` instructions userspace replaces (see
/// `inspector_common::pcap`). As compiled it matches nothing. Inlined where it is used: its
/// returns are jumps to the instruction after it, not `exit`.
#[inline(always)]
fn insp_pcap_filter(scratch: *mut u8, caplen: u32, wirelen: u32) -> u32 {
    let r: u64;
    // SAFETY: a constant, jumps to the next instruction and a constant: no memory is
    // touched. What userspace puts here reads the scratch buffer (r1) within its size.
    unsafe {
        core::arch::asm!(
            "r0 = 0x5ca1ab1e",
            ".rept 4094",
            "goto +0",
            ".endr",
            "r0 = 0",
            inout("r1") scratch => _,
            inout("r2") caplen => _,
            inout("r3") wirelen => _,
            out("r4") _,
            out("r5") _,
            lateout("r0") r,
            options(nostack),
        );
    }
    r as u32
}

/// A bounded length for the helpers: 1..=`max` (a power of two), by arithmetic the
/// verifier follows (Linux 6.1's does not carry a `> 0` test over to the register passed).
#[inline(always)]
fn bounded(n: u32, max: u32) -> u32 {
    (core::hint::black_box(n).wrapping_sub(1) & (max - 1)) + 1
}

/// A VLAN tag the skb holds out of band: TPID as stored (network order) in the low half,
/// TCI in the high half; 0 for none. (A plain integer: an `Option` leaves its payload
/// undefined when `None`, and the verifier refuses to spill an undefined register.)
pub(crate) type Tag = u32;

/// Copies the first bytes of a frame to `to` (at most `CAP`, a power of two), with an
/// out-of-band VLAN tag put back after the MAC addresses, as `AF_PACKET` shows it to
/// tcpdump. `avail` is how many of the frame's bytes `load(offset, to, n)` can read.
/// Returns how many bytes were written (0 if a read failed).
#[inline(always)]
pub(crate) fn copy_frame<const CAP: u32>(
    to: *mut u8,
    avail: u32,
    tag: Tag,
    load: impl Fn(u32, *mut c_void, u32) -> bool,
) -> u32 {
    if avail == 0 {
        return 0;
    }
    if tag == 0 {
        let n = bounded(if avail > CAP { CAP } else { avail }, CAP);
        return if load(0, to.cast(), n) { n } else { 0 };
    }
    if avail < ETH_ALEN2 || !load(0, to.cast(), ETH_ALEN2) {
        return 0;
    }
    let word = (tag & 0xffff | u32::from(((tag >> 16) as u16).to_be()) << 16).to_ne_bytes();
    // SAFETY: CAP >= 16, so bytes 12..16 are inside `to`.
    unsafe { core::ptr::write_unaligned(to.add(12).cast::<[u8; 4]>(), word) };
    let rest = avail - ETH_ALEN2;
    if rest == 0 {
        return 16;
    }
    let n = bounded(if rest > CAP { CAP } else { rest }, CAP);
    let n = if n > CAP - 16 { CAP - 16 } else { n };
    // SAFETY: 16 + n <= CAP.
    if load(ETH_ALEN2, unsafe { to.add(16) }.cast(), n) {
        16 + n
    } else {
        16
    }
}

/// Runs the filter on what `fill(scratch)` copied into the scratch buffer: it returns
/// (bytes copied, the packet's length as the filter sees it), or `None`.
#[inline(always)]
fn run(fill: impl FnOnce(*mut u8) -> Option<(u32, u32)>) -> bool {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let buf = s.cast::<u8>();
    match fill(buf) {
        Some((n, len)) if n != 0 => insp_pcap_filter(buf, n, len) != 0,
        _ => false,
    }
}

/// The length the filter sees: the tag put back counts.
#[inline(always)]
const fn tagged_len(len: u32, tag: Tag) -> u32 {
    if tag == 0 { len } else { len + 4 }
}

/// Whether a tc packet matches.
#[inline(always)]
pub(crate) fn matches_tc(ctx: &TcContext, len: u32, tag: Tag) -> bool {
    let skb = ctx.skb.skb.cast::<c_void>();
    run(|buf| {
        let n = copy_frame::<{ VIEW as u32 }>(buf, len, tag, |off, to, n| {
            // SAFETY: `to` and `n` stay inside the scratch buffer (`copy_frame`).
            unsafe { bpf_skb_load_bytes(skb, off, to, n) == 0 }
        });
        Some((n, tagged_len(len, tag)))
    })
}

/// Whether a packet in kernel memory matches (the global hooks): `frame` is where its
/// Ethernet header starts, `linear` how many bytes are there, `len` its length.
#[inline(always)]
pub(crate) fn matches_kernel(frame: u64, linear: u32, len: u32, tag: Tag) -> bool {
    let avail = if linear < len { linear } else { len };
    run(|buf| {
        let n = copy_frame::<{ VIEW as u32 }>(buf, avail, tag, |off, to, n| {
            // SAFETY: bpf_probe_read_kernel never faults; `to` and `n` stay inside the buffer.
            unsafe { bpf_probe_read_kernel(to, n, (frame + u64::from(off)) as *const c_void) == 0 }
        });
        Some((n, tagged_len(len, tag)))
    })
}

/// Whether a packet that has no Ethernet header (a drop before the link layer, a device
/// without one) matches: the filter sees a made-up Ethernet header (zero addresses, the
/// skb's protocol) before its network header at `l3`, as libpcap sees a cooked capture's
/// packets; `len` is counted from the network header.
#[inline(always)]
pub(crate) fn matches_l3(l3: u64, avail: u32, len: u32, proto: u16) -> bool {
    const ROOM: u32 = VIEW as u32 - 16;
    if avail == 0 {
        return false;
    }
    run(|buf| {
        let n = bounded(if avail > ROOM { ROOM } else { avail }, VIEW as u32);
        let n = if n > ROOM { ROOM } else { n };
        // SAFETY: bpf_probe_read_kernel never faults; 14 + n <= VIEW.
        if unsafe { bpf_probe_read_kernel(buf.add(14).cast(), n, l3 as *const c_void) } != 0 {
            return None;
        }
        // An unset protocol (a packet the host sends, before the IP layer's output sets
        // it): the IP version says.
        // SAFETY: byte 14 was just written (n >= 1); bytes 0..14 are inside the buffer.
        unsafe {
            let ethertype = match (proto, *buf.add(14) >> 4) {
                (0, 4) => 0x0800,
                (0, 6) => 0x86dd,
                (p, _) => p,
            };
            core::ptr::write_bytes(buf, 0, 12);
            core::ptr::write_unaligned(buf.add(12).cast::<u16>(), ethertype.to_be());
        }
        Some((14 + n, len + 14))
    })
}
