//! What a session is asked to do, validated: the filter, which namespaces and interfaces,
//! what the kernel measures, where identity comes from. Front-ends build it from their flags.
use std::path::PathBuf;

use crate::{
    flows::filter::Filter,
    identity::{select::Selectors, tracker},
    probe::log::Level,
};

/// What the kernel programs measure besides per-flow counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Measure {
    /// Counters only.
    #[default]
    Flows,
    /// A per-packet event at every hook (that passes the filter) through a ring buffer of
    /// `ring_bytes`, for a [`super::trace::Tracer`]; with `stack`, also at the stack's
    /// packet tracepoints.
    Events {
        ring_bytes: u32,
        stack: bool,
        /// Stitched into hops and timed (`trace --hops`): attached per device by default,
        /// like per-hop timing, since where the hooks sit is what is timed.
        hops: bool,
        /// Bytes of each packet the events carry: up to `SNAP_LEN` in the ring's fixed
        /// records; more (at most `SNAP_MAX`) in records of their own length.
        snaplen: u32,
    },
    /// Per-hop latency from per-packet events, stitched and aggregated in the session.
    LatencyFromEvents { ring_bytes: u32 },
    /// Per-hop timing in the kernel (histograms, no events); with `stack`, the stack's
    /// tracepoints are hops too.
    HopTiming { sample: Sampling, stack: bool },
}

/// Which packets per-hop timing times, chosen by fingerprint (every hop times the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// Every packet while the node's timed hops stay under the budget, fewer above it.
    Auto,
    /// 1 packet in 2^shift.
    Shift(u32),
}

/// Everything a session starts from.
#[derive(Clone, Debug)]
pub struct Options {
    pub filter: Filter,
    /// Workload selectors (`--pod`, `--container`, `-l`, ...); empty: every workload.
    pub selectors: Selectors,
    /// `--netns` values (inode, `ip netns` name, docker:<id>, "host", a path); empty: all.
    pub netns: Vec<String>,
    /// Only these interfaces (any kind); empty: veths, bridges and bridge ports.
    pub interfaces: Vec<String>,
    pub lo: bool,
    pub devices: bool,
    pub all_interfaces: bool,
    /// Written (with our pid) once every program is attached.
    pub ready_file: Option<PathBuf>,
    /// Read kube-proxy's rules and conntrack to name each flow's Service and backend.
    pub services: bool,
    /// Trace the kernel's drops (`skb:kfree_skb`).
    pub drops: bool,
    /// Capacity of each flow table.
    pub max_flows: u32,
    pub identity: tracker::Options,
    /// Record socket owners (`cgroup_skb`) in namespaces shared by several workloads.
    pub socket_owners: bool,
    /// Expedite RCU grace periods during large attach batches.
    pub fast_attach: bool,
    /// TCX or legacy tc (`None`: what the kernel has, TCX first).
    pub attach: Option<crate::probe::AttachMode>,
    pub measure: Measure,
    /// Kernel-side debug logging at this level (None: off, and free).
    pub kernel_log: Option<Level>,
    /// Collect lifecycle events (namespaces and links coming and going) on each rescan.
    pub lifecycle: bool,
    /// Attach a program that does nothing instead of the observing ones (`bench overhead`'s
    /// baseline); nothing is counted.
    pub empty_programs: bool,
    /// Drops from the classic tracepoint even where `tp_btf` is available.
    pub classic_drops: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            selectors: Selectors::default(),
            netns: Vec::new(),
            interfaces: Vec::new(),
            lo: false,
            devices: false,
            all_interfaces: false,
            ready_file: None,
            services: true,
            drops: true,
            max_flows: 65_536,
            identity: tracker::Options::default(),
            socket_owners: true,
            fast_attach: false,
            attach: None,
            measure: Measure::Flows,
            kernel_log: None,
            lifecycle: false,
            empty_programs: false,
            classic_drops: false,
        }
    }
}
