//! Flow keys, per-flow counters and per-packet events: the records the tc programs write and
//! userspace reads. All `#[repr(C)]` with explicit padding and a size assertion each.

/// Which way a packet crossed the hook.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// tc ingress: the packet arrived on the interface.
    Ingress = 0,
    /// tc egress: the packet is being sent out of the interface.
    Egress = 1,
}

impl Direction {
    #[must_use]
    pub const fn from_u8(v: u8) -> Self {
        if v == 0 { Self::Ingress } else { Self::Egress }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// Key of the per-flow counter map: one flow at one hook.
///
/// Addresses are 16 bytes; IPv4 (and ARP's protocol addresses) use the first four and leave the
/// rest zero, `ethertype` says which family. For ICMP/ICMPv6 `sport` carries the echo identifier
/// (0 for other types) and `dport` is `type << 8 | code`. For ARP `dport` is the ARP opcode.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Inode of the network namespace of the device (`dev->nd_net->ns.inum`), 0 if unknown.
    pub netns: u32,
    pub ifindex: u32,
    pub sport: u16,
    pub dport: u16,
    /// `EtherType` of the L3 payload after any VLAN tags (host byte order).
    pub ethertype: u16,
    /// Outer VLAN id (0 = untagged).
    pub vlan: u16,
    /// IP protocol number (0 for non-IP).
    pub proto: u8,
    /// [`Direction`] as u8.
    pub direction: u8,
    /// Which hook saw the packet: one of the `HOOK_*` values (tc for every flow key; the
    /// stack's tracepoints only in events).
    pub hook: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 52);

/// [`FlowKey::hook`]: tc ingress or egress (TCX) on the interface.
pub const HOOK_TC: u8 = 0;
/// [`FlowKey::hook`]: `net_dev_queue` (`tp_btf`): about to enter the device's qdisc.
pub const HOOK_DEV_QUEUE: u8 = 1;
/// [`FlowKey::hook`]: `net_dev_start_xmit` (`tp_btf`): out of the qdisc, into the driver.
pub const HOOK_START_XMIT: u8 = 2;
/// [`FlowKey::hook`]: `netif_receive_skb` (`tp_btf`): into the stack, before tc ingress.
pub const HOOK_RECEIVE: u8 = 3;

/// A hook in one byte, as per-hop timing tells hooks apart: the direction, plus the stack
/// hook's number (`HOOK_*`) << 1.
#[must_use]
pub const fn hook_code(direction: u8, hook: u8) -> u8 {
    direction | hook << 1
}

/// Name of a hook as `trace` shows it, with the packet's direction for tc.
#[must_use]
pub const fn hook_name(hook: u8, direction: u8) -> &'static str {
    match hook {
        HOOK_DEV_QUEUE => "net_dev_queue",
        HOOK_START_XMIT => "net_dev_start_xmit",
        HOOK_RECEIVE => "netif_receive_skb",
        _ => {
            if direction == Direction::Egress as u8 {
                "tc-egress"
            } else {
                "tc-ingress"
            }
        }
    }
}

impl FlowKey {
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            src: [0; 16],
            dst: [0; 16],
            netns: 0,
            ifindex: 0,
            sport: 0,
            dport: 0,
            ethertype: 0,
            vlan: 0,
            proto: 0,
            direction: 0,
            hook: 0,
            _pad: 0,
        }
    }
}

/// The compact key used for IPv4 flows (the common case): hashing and comparing 24 bytes
/// instead of 52 is a large part of the per-packet cost. Same meaning as [`FlowKey`] with
/// `ethertype` = IPv4 and 4-byte addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub netns: u32,
    pub ifindex: u32,
    pub sport: u16,
    pub dport: u16,
    pub vlan: u16,
    pub proto: u8,
    pub direction: u8,
}
const _: () = assert!(core::mem::size_of::<FlowKey4>() == 24);

impl FlowKey4 {
    /// The equivalent full key.
    #[must_use]
    pub fn widen(&self) -> FlowKey {
        let mut k = FlowKey::zeroed();
        k.src[..4].copy_from_slice(&self.src);
        k.dst[..4].copy_from_slice(&self.dst);
        k.netns = self.netns;
        k.ifindex = self.ifindex;
        k.sport = self.sport;
        k.dport = self.dport;
        k.ethertype = crate::parse::ETH_P_IP;
        k.vlan = self.vlan;
        k.proto = self.proto;
        k.direction = self.direction;
        k
    }
}

/// Slots per CPU of the flow cache (`inspector_fcache`): a power of two.
pub const CACHE_SLOTS: u32 = 1 << 10;

/// One slot of the per-CPU, direct-mapped flow cache in front of `inspector_flow4`. A packet
/// whose flow holds its slot ([`cache_index`]) only bumps counters there: an array lookup and
/// a 24-byte compare instead of hashing into the LRU table. A packet of another flow moves
/// the slot's counts into the LRU table (adding to what is there) and takes the slot. A
/// flow's count is always the LRU table's part plus the cache's part.
///
/// Taking a slot is bracketed by `gen_tail` (written first) and `gen_head` (written last):
/// a copy that reads the slot in address order and finds the two equal did not overlap a
/// take-over, so its key and counters belong together. Bumps of a held slot leave them alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSlot {
    pub gen_head: u32,
    pub _pad: u32,
    pub key: FlowKey4,
    pub stats: FlowStats,
    pub gen_tail: u32,
    pub _pad2: u32,
}
const _: () = assert!(core::mem::size_of::<FlowSlot>() == 80);

impl FlowSlot {
    /// Whether a copy of the slot holds a flow whose key and counters belong together.
    #[must_use]
    pub const fn settled(&self) -> bool {
        self.gen_head == self.gen_tail && self.stats.packets != 0
    }
}

/// The cache slot of a flow: a multiplicative hash of its key (a few instructions; the
/// kernel's own flow hash is not available to tracepoint programs).
#[inline(always)]
#[must_use]
pub fn cache_index(k: &FlowKey4) -> u32 {
    let a = u32::from_ne_bytes(k.src) ^ u32::from_ne_bytes(k.dst).rotate_left(13);
    let b = (u32::from(k.sport) << 16 | u32::from(k.dport))
        ^ k.netns
        ^ k.ifindex.rotate_left(7)
        ^ (u32::from(k.proto) << 24 | u32::from(k.direction) << 16 | u32::from(k.vlan));
    let h = (a.wrapping_mul(0x9e37_79b1) ^ b).wrapping_mul(0x85eb_ca6b);
    h >> (32 - CACHE_SLOTS.trailing_zeros())
}

/// Counters of one flow at one hook, per CPU (userspace sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    /// Sum of `skb->len` as the hook saw it: the whole frame from the Ethernet header on.
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`) of the first packet on this CPU.
    pub first_ns: u64,
    /// `bpf_jiffies64` of the latest packet: a plain load, where any nanosecond clock costs a
    /// seqcount loop per packet. Userspace converts it with a [`ClockSample`].
    pub last_jiffies: u64,
    /// OR of every TCP flags byte seen.
    pub tcp_flags: u8,
    /// OR of every parser status bit seen (see [`crate::parse::status`]).
    pub status: u8,
    /// Padding as scalars: a zeroed byte array becomes a `memset` call in the eBPF object,
    /// a BPF-to-BPF call that Linux 6.1's verifier counts 32 bytes of stack for.
    pub _pad16: u16,
    pub _pad32: u32,
}
const _: () = assert!(core::mem::size_of::<FlowStats>() == 40);

/// A (jiffies, `CLOCK_MONOTONIC` ns) pair taken together in the kernel, per CPU, whenever a
/// program reads the precise clock anyway (a new flow). Lets userspace turn `last_jiffies`
/// into nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSample {
    pub jiffies: u64,
    pub ns: u64,
}
const _: () = assert!(core::mem::size_of::<ClockSample>() == 16);

/// Slots of the ifindex -> namespace array (`inspector_ifns`); larger ifindexes fall back
/// to reading the namespace from the device.
pub const IFNS_SLOTS: u32 = 1 << 18;

/// Value of `inspector_ifns`: what the tc programs need per interface, on the one cache line
/// they read for the interface anyway.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfInfo {
    /// Inode of the namespace of the one attached interface with this ifindex, 0 if
    /// several attached namespaces share it (or none).
    pub netns: u32,
    /// Per-hop timing in auto mode: time 1 packet in 2^this (see `hop`).
    pub hop_shift: u32,
}
const _: () = assert!(core::mem::size_of::<IfInfo>() == 8);

/// Key of the drop map: which packets the kernel dropped, where, and why.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// Where the kernel freed it: the call site's address (`location` of the tracepoint),
    /// named from /proc/kallsyms in userspace.
    pub location: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Namespace inode and ifindex of `skb->dev` when the packet was dropped (0 if none).
    pub netns: u32,
    pub ifindex: u32,
    /// `enum skb_drop_reason`.
    pub reason: u32,
    pub sport: u16,
    pub dport: u16,
    /// `skb->protocol` (host order).
    pub ethertype: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<DropKey>() == 64);

/// A socket as the socket-owner program records it: its namespace, protocol and local end
/// (the unspecified address for a wildcard bind). The value is the cgroup v2 id of the
/// socket's owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockKey {
    /// IPv4 in the first 4 bytes, or IPv6.
    pub addr: [u8; 16],
    pub netns: u32,
    /// Host byte order.
    pub port: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<SockKey>() == 24);

/// Bytes of each packet copied into a [`PacketEvent`] (headers, for display and pcap).
pub const SNAP_LEN: usize = 128;

/// Most bytes of a packet a capture can hold (`trace -w -s N`, N > [`SNAP_LEN`]): the
/// kernel builds such an event in a per-CPU buffer ([`WholeEvent`]), and a per-CPU map
/// value can be at most 32 KiB (`PCPU_MIN_UNIT_SIZE`); a power of two below that. Whole
/// frames up to jumbo MTUs; GRO/GSO super-packets are cut here (their length is kept).
pub const SNAP_MAX: usize = 16384;

/// A [`PacketEvent`] whose `snap` goes on for [`SNAP_MAX`] bytes: the per-CPU buffer a
/// whole-packet event is built in; the ring gets its first `80 + snap_len` bytes (records
/// of other lengths than a `PacketEvent`'s: userspace reads `snap_len` bytes from offset
/// 80 whatever the record's length).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WholeEvent {
    pub ev: PacketEvent,
    pub more: [u8; SNAP_MAX - SNAP_LEN],
}
const _: () = assert!(core::mem::size_of::<WholeEvent>() == 80 + SNAP_MAX);
/// Where `snap` starts in a ring record.
pub const SNAP_OFFSET: usize = 80;
const _: () = assert!(core::mem::offset_of!(PacketEvent, snap) == SNAP_OFFSET);

/// One packet at one hook, sent over the ring buffer when per-packet events are on.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketEvent {
    pub ts_ns: u64,
    pub key: FlowKey,
    /// `skb->len` at the hook.
    pub len: u32,
    /// `skb->mark`.
    pub mark: u32,
    /// How many bytes of `snap` are valid.
    pub snap_len: u16,
    pub tcp_flags: u8,
    pub status: u8,
    /// A VLAN tag the skb held out of band (not in `snap`): its TPID (network order as
    /// stored, 0 = none) and TCI. Userspace puts it back in the bytes, as `AF_PACKET` does.
    pub vlan_tpid: u16,
    pub vlan_tci: u16,
    pub _pad: u32,
    pub snap: [u8; SNAP_LEN],
}
const _: () = assert!(core::mem::size_of::<PacketEvent>() == 80 + SNAP_LEN);

impl PacketEvent {
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            key: FlowKey::zeroed(),
            len: 0,
            mark: 0,
            snap_len: 0,
            tcp_flags: 0,
            status: 0,
            vlan_tpid: 0,
            vlan_tci: 0,
            _pad: 0,
            snap: [0; SNAP_LEN],
        }
    }
}

/// Slots of the per-CPU statistics array (`inspector_stats`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Packets whose headers ended early.
    Truncated = 0,
    /// Packets with an impossible header field.
    Malformed = 1,
    /// Non-first IP fragments (no L4 header).
    Fragment = 2,
    /// Packets that are neither IPv4 nor IPv6 (counted by `EtherType` in the flow map).
    NonIp = 3,
    /// Events written to the ring buffer.
    EventsSent = 4,
    /// Events lost because the ring buffer was full.
    EventsLost = 5,
    /// Flow-map updates the kernel refused (the packet is then missing from flow counts).
    FlowUpdateFailed = 6,
    /// IPv6 packets with more extension headers than the parser follows.
    ExtLimit = 7,
    /// Hop-to-hop transitions not timed because their histogram slots were all taken.
    HopSlotsFull = 8,
    /// Hop-to-hop transitions timed (the rate that per-hop timing's sampling is set by).
    HopTimed = 9,
    /// Flow records created in the flow tables (a flow evicted and seen again is created
    /// again): with the tables' entries, how many were evicted.
    FlowsCreated = 10,
}

/// Number of slots in `inspector_stats`.
pub const STAT_SLOTS: u32 = 11;

impl Stat {
    pub const ALL: [Self; STAT_SLOTS as usize] = [
        Self::Truncated,
        Self::Malformed,
        Self::Fragment,
        Self::NonIp,
        Self::EventsSent,
        Self::EventsLost,
        Self::FlowUpdateFailed,
        Self::ExtLimit,
        Self::HopSlotsFull,
        Self::HopTimed,
        Self::FlowsCreated,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::Fragment => "fragment",
            Self::NonIp => "non_ip",
            Self::EventsSent => "events_sent",
            Self::EventsLost => "events_lost",
            Self::FlowUpdateFailed => "flow_update_failed",
            Self::ExtLimit => "ipv6_ext_limit",
            Self::HopSlotsFull => "hop_slots_full",
            Self::HopTimed => "hop_timed",
            Self::FlowsCreated => "flows_created",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), every bit pattern valid, explicit padding.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ClockSample {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IfInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PacketEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::config::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flows that differ in one port each land all over the cache, never past its end.
    #[test]
    fn cache_index_spreads_flows_over_the_slots() {
        let mut used = [false; CACHE_SLOTS as usize];
        for port in 0..4096u16 {
            let k = FlowKey4 {
                src: [198, 18, 0, 2],
                dst: [198, 18, 0, 4],
                netns: 4_026_531_840,
                ifindex: 2,
                sport: 40_000,
                dport: port,
                vlan: 0,
                proto: 17,
                direction: 1,
            };
            let i = cache_index(&k);
            assert!(i < CACHE_SLOTS);
            used[i as usize] = true;
        }
        let n = used.iter().filter(|u| **u).count();
        // 4096 balls in 1024 bins: a uniform hash leaves about 2% empty.
        assert!(n > 950, "only {n} of {CACHE_SLOTS} slots used");
    }
}
