//! Load-time configuration of the tc programs: one read-only global (`INSPECTOR_CONFIG`) set
//! by userspace before load, so the verifier sees constants and prunes what is switched off.

/// Name of the read-only global holding a [`Config`].
pub const CONFIG_GLOBAL: &str = "INSPECTOR_CONFIG";

/// Bit in [`Config::flags`]: emit a ring-buffer event per matching packet.
pub const FLAG_EVENTS: u8 = 1;
/// Bit in [`Config::flags`]: the `off_*` fields are valid; read each packet's namespace inode.
pub const FLAG_NETNS: u8 = 2;
/// Bit in [`Config::flags`]: time each packet from hook to hook in the kernel (see `hop`).
pub const FLAG_HOPTIME: u8 = 4;
/// Bit in [`Config::flags`]: also trace the stack's packet tracepoints (userspace loads
/// and attaches those programs; they report only with `FLAG_EVENTS`).
pub const FLAG_STACK: u8 = 8;
/// [`Config::hop_sample_shift`]: adjusted at run time (auto sampling).
/// [`Config::off_tp_reason`] when `skb:kfree_skb` has no `reason` field.
pub const NO_DROP_REASON: u32 = u32::MAX;
pub const HOP_SHIFT_AUTO: u8 = 0xff;
/// Bit in [`Config::flags`]: count with the global hooks (`tp_btf` on `netif_receive_skb` and
/// `net_dev_start_xmit`, for every device, selected by `inspector_gsel`) instead of tc.
pub const FLAG_GLOBAL: u8 = 16;
/// [`Config::global_unknown`]: a device not listed is not counted (until userspace lists it).
pub const UNKNOWN_SKIP: u8 = 0;
/// A device not listed is counted unless it is a loopback device (ifindex 1 in every
/// namespace): new veths are seen from their first packet.
pub const UNKNOWN_COUNT: u8 = 1;
/// A device not listed is counted, loopback too.
pub const UNKNOWN_COUNT_LO: u8 = 2;
/// Bit in [`Config::flags`]: fault injection for tests; makes the program read out of bounds so
/// the verifier must reject it. Never set outside the test of verifier-error reporting.
pub const FLAG_FAULT_VERIFIER: u8 = 0x80;
/// Bit in [`Config::flags`]: a pcap-filter expression is set (see `pcap`); only packets it
/// matches are counted and traced.
pub const FLAG_PCAP: u8 = 32;
/// Bit in [`Config::flags`]: events carry up to [`Config::snaplen`] bytes of the packet
/// (more than `SNAP_LEN`: built in a per-CPU buffer, written with `bpf_ringbuf_output`).
pub const FLAG_WHOLE: u8 = 64;
/// [`Config::off_skb_vlan_present`] on kernels without `sk_buff.vlan_present` (6.2+: a tag
/// is present when `vlan_all` is not zero).
pub const NO_VLAN_PRESENT: u32 = u32::MAX;

/// Which packets produce events. Zero fields match anything. Flow counters ignore the filter:
/// they always count every packet on every hook, so per-interface totals stay exact.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address (network part) that source or destination must fall in, if `host_family != 0`.
    pub host: [u8; 16],
    /// Mask applied to an address before comparing with `host`.
    pub host_mask: [u8; 16],
    /// Only this network namespace (inode), 0 = any.
    pub netns: u32,
    /// Only this interface (ifindex in `netns`), 0 = any.
    pub ifindex: u32,
    /// Kernel struct offsets (from BTF): `sk_buff.dev`, `net_device.nd_net.net`,
    /// `net.ns.inum`. The programs cannot relocate these themselves (no CO-RE in Rust).
    pub off_skb_dev: u32,
    pub off_dev_net: u32,
    pub off_net_inum: u32,
    /// More offsets, for the drop tracepoint: `net_device.ifindex`, `sk_buff.head`,
    /// `sk_buff.network_header`, `sk_buff.tail`, `sk_buff.len`, `sk_buff.protocol`.
    pub off_dev_ifindex: u32,
    pub off_skb_head: u32,
    pub off_skb_nh: u32,
    pub off_skb_tail: u32,
    pub off_skb_len: u32,
    pub off_skb_proto: u32,
    /// Offsets of `skbaddr` and `reason` in the `skb:kfree_skb` tracepoint record, read from
    /// its format file at start-up.
    pub off_tp_skbaddr: u32,
    /// Offset of `reason`, or [`NO_DROP_REASON`] on kernels before 5.17 (no such field:
    /// every `kfree_skb` is a drop, reason not specified).
    pub off_tp_reason: u32,
    /// Offset of `location` (the freeing call site) in the same record.
    pub off_tp_location: u32,
    /// For the socket-owner program: `sk_buff.sk`, `sock.__sk_common.skc_net.net`.
    pub off_skb_sk: u32,
    pub off_sk_net: u32,
    /// For the stack's tracepoints: `sk_buff.mac_header`, `sk_buff.data`.
    pub off_skb_mac: u32,
    pub off_skb_data: u32,
    /// For the global hooks' events: `sk_buff.mark`.
    pub off_skb_mark: u32,
    /// Per-hop timing: slots of `inspector_hseen` minus one (a power of two minus one).
    pub hop_seen_mask: u32,
    /// Per-packet events: the consumer is woken once every this many events per CPU (it
    /// also drains on a short timer); the others are submitted without a wake-up, which
    /// would cost more than the whole rest of the program.
    pub ring_wake_events: u32,
    /// For the filter on the global hooks: `sk_buff.vlan_proto` (`vlan_tci` follows it), and
    /// the bit offset of `sk_buff.vlan_present` or [`NO_VLAN_PRESENT`].
    pub off_skb_vlan: u32,
    pub off_skb_vlan_present: u32,
    /// With [`FLAG_WHOLE`]: the most bytes of a packet an event carries (at most
    /// `flow::SNAP_MAX`).
    pub snaplen: u32,
    /// Source or destination port, 0 = any.
    pub port: u16,
    /// IP protocol number, 0 = any.
    pub proto: u8,
    /// 0 = no address filter, 4 = IPv4 CIDR, 6 = IPv6 CIDR.
    pub host_family: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Per-hop timing: time 1 packet in 2^this, or [`HOP_SHIFT_AUTO`]: the shift is read
    /// from the `inspector_hshift` map, which userspace moves with the traffic.
    pub hop_sample_shift: u8,
    /// Global hooks: what to do with a device userspace has not listed in `inspector_gsel`
    /// (one that appeared since its last look): one of the `UNKNOWN_*` values.
    pub global_unknown: u8,
    /// Workload selection: the kinds of selector given (`wsel::ANY | FROM | TO` bits), 0 =
    /// none. Events then also pass `wsel::pass` on the `inspector_wns`/`inspector_waddr`
    /// entries of their namespace and addresses; a namespace not listed there (one that
    /// appeared since userspace last looked) passes, and userspace decides.
    pub wsel: u8,
}
const _: () = assert!(core::mem::size_of::<Config>() == 136);

impl Config {
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            host: [0; 16],
            host_mask: [0; 16],
            netns: 0,
            ifindex: 0,
            off_skb_dev: 0,
            off_dev_net: 0,
            off_net_inum: 0,
            off_dev_ifindex: 0,
            off_skb_head: 0,
            off_skb_nh: 0,
            off_skb_tail: 0,
            off_skb_len: 0,
            off_skb_proto: 0,
            off_tp_skbaddr: 0,
            off_tp_reason: 0,
            off_tp_location: 0,
            off_skb_sk: 0,
            off_sk_net: 0,
            off_skb_mac: 0,
            off_skb_data: 0,
            off_skb_mark: 0,
            hop_seen_mask: 0,
            ring_wake_events: 0,
            off_skb_vlan: 0,
            off_skb_vlan_present: 0,
            snaplen: 0,
            port: 0,
            proto: 0,
            host_family: 0,
            flags: 0,
            hop_sample_shift: 0,
            global_unknown: UNKNOWN_SKIP,
            wsel: 0,
        }
    }

    /// Whether an address of `family` (4 or 6) falls inside the configured CIDR.
    #[must_use]
    #[inline(always)]
    pub fn host_matches(&self, family: u8, addr: &[u8; 16]) -> bool {
        if family != self.host_family {
            return false;
        }
        let mut i = 0;
        while i < 16 {
            if addr[i] & self.host_mask[i] != self.host[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}
