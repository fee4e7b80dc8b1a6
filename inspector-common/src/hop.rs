//! In-kernel per-hop timing (`flows --latency`): the records the tc programs keep so that the
//! time from one hook to the next is measured without a per-packet event.
//!
//! The node keeps a two-way set-associative table of the packets seen last ([`HopSeen`],
//! indexed by the packet's [`fingerprint`]; a new packet replaces the older of its two). When the same packet shows up at another hook - on any
//! CPU: a qdisc's timer or RPS may move it - the time since its last hook goes into the
//! histogram of that transition ([`HopHist`], found by its [`HopTag`] in a small
//! open-addressed table of the recording CPU). Only array lookups (inlined by the verifier)
//! and one clock read are added per timed packet per hop.
//!
//! The histogram table is a plain array with one block of slots per CPU (index = CPU *
//! slots + slot), not a per-CPU array: a per-CPU array's lookup first loads the element's
//! per-CPU pointer from a table of pointers, a second cache miss per packet. The packet
//! table is shared by all CPUs (its slots are written without atomics: two CPUs writing one
//! slot in the same instant may leave a torn entry, at worst one wrong or lost hop time).

use crate::parse::Head;

/// Slots of the table of packets last seen per possible CPU (the table has this times the
/// CPU count rounded up to a power of two). Only packets in flight need a slot - a packet
/// crosses a node in microseconds - and a small table stays in cache.
pub const HOP_SEEN_SLOTS: u32 = 1024;
/// Slots per CPU of the histogram table (a power of two).
pub const HOP_HIST_SLOTS: u32 = 512;
/// Slots tried for a transition before it is counted as `Stat::HopSlotsFull`.
pub const HOP_PROBES: u32 = 4;
/// A packet seen again later than this is taken for a new packet with the same
/// fingerprint, not the same packet one hop on: a packet crosses a node in microseconds
/// (milliseconds behind a long queue), while IPv4 ids repeat every 65,536 packets of a
/// flow (0.8 s at 80,000 packets/s). Hops slower than this are not timed.
pub const HOP_MAX_NS: u64 = 100_000_000;
/// Packets are timed 1 in 2^shift, the shift being the one value of the `inspector_hshift`
/// array (set by userspace, adjusted to the traffic); at most this.
pub const HOP_MAX_SHIFT: u32 = 10;
/// Sub-buckets per power of two in [`HopHist::buckets`] (within 6.25% of the value).
pub const HOP_SUB_BITS: u32 = 3;
/// Buckets: exact below 8 ns, then 8 per power of two up to 2^32 ns (4.3 s).
pub const HOP_BUCKETS: usize = 240;

/// A packet as last seen on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopSeen {
    /// [`fingerprint`]; 0 = empty.
    pub fp: u64,
    /// `bpf_ktime_get_ns` at that hook.
    pub ts: u64,
    pub netns: u32,
    pub ifindex: u32,
    /// Addresses where the packet was first seen (before any NAT further on).
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub direction: u8,
    pub proto: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<HopSeen>() == 40);

/// One transition: from one hook to the next, for packets first seen with these addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HopTag {
    pub from_netns: u32,
    pub from_ifindex: u32,
    pub to_netns: u32,
    pub to_ifindex: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub from_direction: u8,
    pub to_direction: u8,
    /// 1 once the slot holds a transition.
    pub used: u8,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<HopTag>() == 32);

impl HopTag {
    /// The tag as four words (compared and hashed that way in the kernel).
    #[must_use]
    #[inline(always)]
    pub fn words(&self) -> [u64; 4] {
        // SAFETY: 32 bytes of plain data with explicit padding, read as four u64.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// First slot tried for this tag in the histogram array.
    #[must_use]
    #[inline(always)]
    pub fn slot(&self) -> u32 {
        let w = self.words();
        let x = (w[0] ^ w[1].rotate_left(17) ^ w[2].rotate_left(31) ^ w[3].rotate_left(47))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((x >> 40) as u32) & (HOP_HIST_SLOTS - 1)
    }
}

/// The histogram of one transition on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopHist {
    pub tag: HopTag,
    pub packets: u64,
    pub sum_ns: u64,
    pub max_ns: u64,
    pub buckets: [u32; HOP_BUCKETS],
}
const _: () = assert!(core::mem::size_of::<HopHist>() == 32 + 24 + 4 * HOP_BUCKETS);

impl HopHist {
    /// Adds another histogram (of the same transition, e.g. another CPU's) to this one.
    pub fn merge(&mut self, other: &Self) {
        self.packets += other.packets;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
    }
}

/// The bucket of a time in ns.
#[must_use]
#[inline(always)]
pub const fn hop_bucket(ns: u64) -> usize {
    let v = if ns > u32::MAX as u64 {
        u32::MAX
    } else {
        ns as u32
    };
    if v < 8 {
        return v as usize;
    }
    let e = v.ilog2();
    let sub = (v >> (e - HOP_SUB_BITS)) & 7;
    ((e - 2) * 8 + sub) as usize
}

/// The middle of a bucket's range (its lowest value below 8 ns).
#[must_use]
pub const fn hop_bucket_value(b: usize) -> u64 {
    if b < 8 {
        return b as u64;
    }
    let e = (b / 8) as u32 + 2;
    let lo = ((8 + (b % 8)) as u64) << (e - HOP_SUB_BITS);
    lo + (1u64 << (e - HOP_SUB_BITS)) / 2
}

/// IPv4 header words a fingerprint is made of: id, total length and protocol, plus two L4
/// words NAT leaves alone (TCP sequence and acknowledgement numbers; UDP length and the
/// first payload bytes; ICMP type/code and echo sequence). Addresses, ports and checksums
/// are left out: DNAT and masquerade rewrite them between hops. Never 0.
#[must_use]
#[inline(always)]
pub fn fingerprint<H: Head + ?Sized>(h: &H, proto: u8) -> u64 {
    let (a, b) = match proto {
        6 => (
            u32::from(h.w(38)) << 16 | u32::from(h.w(40)),
            u32::from(h.w(42)) << 16 | u32::from(h.w(44)),
        ),
        17 => (
            u32::from(h.w(38)),
            u32::from(h.w(42)) << 16 | u32::from(h.w(44)),
        ),
        1 => (u32::from(h.w(34)), u32::from(h.w(40))),
        _ => (0, 0),
    };
    let ip = u64::from(h.w(18)) << 32 | u64::from(h.w(16)) << 8 | u64::from(proto);
    let x = (u64::from(a) << 32 | u64::from(b)) ^ ip.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), every bit pattern valid, explicit padding.
    unsafe impl aya::Pod for super::HopHist {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HopSeen {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_six_percent() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, 123_456_789, 1 << 31, u64::from(u32::MAX)]) {
            let b = hop_bucket(v);
            assert!(b >= last, "buckets grow with the value");
            last = b;
            assert!(b < HOP_BUCKETS);
            let m = hop_bucket_value(b);
            assert!(m.abs_diff(v) * 1000 <= v * 63 + 1, "{v} -> {b} -> {m}");
        }
        assert_eq!(hop_bucket(u64::MAX), HOP_BUCKETS - 1);
    }

    #[test]
    fn a_tcp_packet_keeps_its_fingerprint_across_nat() {
        let mut before = [0u8; crate::parse::FAST_LEN];
        before[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        before[14] = 0x45;
        before[16..18].copy_from_slice(&60u16.to_be_bytes());
        before[18..20].copy_from_slice(&7u16.to_be_bytes());
        before[23] = 6;
        before[26..30].copy_from_slice(&[198, 18, 30, 5]);
        before[30..34].copy_from_slice(&[198, 18, 128, 10]);
        before[34..38].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        before[38..42].copy_from_slice(&1000u32.to_be_bytes());
        before[42..46].copy_from_slice(&2000u32.to_be_bytes());
        let mut after = before;
        after[24..26].copy_from_slice(&[0xab, 0xcd]);
        after[26..30].copy_from_slice(&[198, 18, 30, 1]);
        after[30..34].copy_from_slice(&[198, 18, 42, 7]);
        after[34..38].copy_from_slice(&[0xc8, 0x22, 0x1f, 0x90]);
        assert_eq!(fingerprint(&before, 6), fingerprint(&after, 6));
        let mut next = before;
        next[42..46].copy_from_slice(&2001u32.to_be_bytes());
        assert_ne!(fingerprint(&before, 6), fingerprint(&next, 6));
        let mut other_id = before;
        other_id[19] = 8;
        assert_ne!(fingerprint(&before, 6), fingerprint(&other_id, 6));
    }
}
