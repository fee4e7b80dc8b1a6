//! The records a session answers with: `flows`' records with who is at each end and the
//! Service they went to. Every front-end renders these (see `output`), so the JSON shapes
//! are defined here once: an end is always `src`/`sport`, `dst`/`dport`; every record with
//! a time carries `time_unix_ns` (monotonic stamps stay alongside as `*_ns`).
use serde::Serialize;

use crate::{
    flows::{FlowRecord, drops::DropRecord, path::FlowPath},
    identity::Endpoint,
    services::attrib::{Attribution, BackendRef, NatRef, ServiceRef},
};

/// For a connection to a Kubernetes Service: the Service, the backend the kernel chose (and
/// its chain), and the NAT conntrack recorded.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceOf {
    pub service: ServiceRef,
    pub backend: BackendRef,
    pub nat: NatRef,
}

impl From<&Attribution> for ServiceOf {
    fn from(a: &Attribution) -> Self {
        Self {
            service: a.service.clone(),
            backend: a.backend.clone(),
            nat: a.nat.clone(),
        }
    }
}

impl ServiceOf {
    /// `ns/name` of the Service.
    #[must_use]
    pub fn ns_name(&self) -> String {
        format!("{}/{}", self.service.namespace, self.service.name)
    }
}

/// One flow at one hook (`type: "flow"`).
#[derive(Clone, Debug, Serialize)]
pub struct Flow {
    #[serde(flatten)]
    pub rec: FlowRecord,
    /// Who sent it and who receives it (`null` when unknown).
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
    #[serde(flatten)]
    pub service: Option<ServiceOf>,
}

/// One (flow, device, reason) of dropped packets (`type: "drop"`).
#[derive(Clone, Debug, Serialize)]
pub struct Drop {
    #[serde(flatten)]
    pub rec: DropRecord,
    /// For netfilter drops: the DROP/REJECT rule whose counter grew since the session
    /// started, in the namespace of the drop (`table CHAIN: rule`), when iptables has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
}

/// One direction of one flow with its hops in order (`type: "path"`).
#[derive(Clone, Debug, Serialize)]
pub struct Path {
    #[serde(flatten)]
    pub path: FlowPath,
    /// Who sent it and who receives it, as attributed at the hops (first answer wins).
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
}

/// Kernel-side counters and the attach count (`type: "stats"`).
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub attached_interfaces: usize,
    /// Each `inspector_common::Stat` by its name (`events_sent`, `events_lost`, ...).
    #[serde(flatten)]
    pub counters: std::collections::BTreeMap<&'static str, u64>,
}

/// One packet at one hook (`type: "packet"`, `trace`).
#[derive(Clone, Debug, Serialize)]
pub struct Packet {
    /// When the hook saw it: `CLOCK_MONOTONIC` ns, and Unix time in ns.
    pub ts_ns: u64,
    pub time_unix_ns: u64,
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    /// `tc-ingress`, `tc-egress`, `net_dev_queue`, `net_dev_start_xmit`, `netif_receive_skb`.
    pub hook: &'static str,
    pub direction: &'static str,
    #[serde(flatten)]
    pub hdr: crate::flows::Header,
    /// Bytes of the whole frame.
    pub len: u32,
    pub tcp_flags: String,
    pub mark: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub anomalies: String,
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
    #[serde(flatten)]
    pub service: Option<ServiceOf>,
    /// The bytes the kernel copied: up to `SNAP_LEN` from the frame's start (for capture
    /// files; not in the record).
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The comment a capture file gave this packet (`trace -r`), written again as it was.
    #[serde(skip)]
    pub file_comment: Option<String>,
}

/// One hook of a stitched packet (`hops` of a `packet_hops` record).
#[derive(Clone, Debug, Serialize)]
pub struct HopAt {
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    /// `tc-ingress`, `tc-egress`, `net_dev_queue`, `net_dev_start_xmit` or
    /// `netif_receive_skb`.
    pub hook: &'static str,
    pub direction: &'static str,
    #[serde(skip)]
    pub hook_id: u8,
    pub ts_ns: u64,
    pub time_unix_ns: u64,
    /// Time since the previous hop (0 at the first).
    pub delta_ns: u64,
    /// The packet's addresses at this hop (they change across NAT).
    pub src: Option<std::net::IpAddr>,
    pub sport: Option<u16>,
    pub dst: Option<std::net::IpAddr>,
    pub dport: Option<u16>,
}

impl HopAt {
    /// `netns/ifname(out)`, or `(queue)`/`(xmit)`/`(rx)` for the stack's hooks.
    #[must_use]
    pub fn label(&self) -> String {
        crate::flows::path::hook_label(&self.netns_name, &self.ifname, self.hook_id, self.direction)
    }
}

/// One packet with all its hops in path order (`type: "packet_hops"`, `trace --hops`).
#[derive(Clone, Debug, Serialize)]
pub struct PacketHops {
    /// When its first hop saw it.
    pub ts_ns: u64,
    pub time_unix_ns: u64,
    /// Its protocol and addresses at the first hop.
    #[serde(flatten)]
    pub hdr: crate::flows::Header,
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
    pub len: u32,
    pub tcp_flags: String,
    pub hops: Vec<HopAt>,
    /// First hop to last.
    pub total_ns: u64,
}
