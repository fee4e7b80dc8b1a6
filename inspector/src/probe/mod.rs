//! The only code that touches aya: load the kernel programs with their configuration, attach
//! them to interfaces in any namespace, read the maps and the ring buffers, and detach.
//!
//! [`Probe`] owns the loaded object and every link. Attachments are TCX links held as file
//! descriptors, so they vanish with the process however it ends (even SIGKILL); on kernels
//! without TCX, legacy tc filters that `cleanup` removes if the process dies first. Dropping
//! the `Probe` detaches everything. It imports nothing above it (`sys`, `topology` and
//! `inspector-common` only): what it reads comes out as `inspector-common` types or plain
//! data ([`Counts`], [`SocketOwners`]).
mod attach;
mod batch;
pub mod btf;
pub mod cleanup;
pub mod clock;
mod counts;
mod error;
pub mod events;
mod fault;
mod fcache;
pub mod features;
mod global;
pub mod legacy;
mod legacy_guard;
mod load;
pub mod log;
mod moved;
pub mod pcap;
pub mod preflight;
mod read;
mod rtnl;
pub mod sockets;
pub mod tracefs;
mod wsel;

use std::collections::HashMap;

use aya::Ebpf;
use inspector_common::config::Config;

pub use attach::AttachKey;
pub use counts::Counts;
pub use error::ProbeError;
pub use events::{Event, EventReader};
pub use sockets::SocketOwners;

/// Names of the programs and maps in the object (`bpftool` shows them; maps all carry the
/// `inspector_` prefix).
pub const PROG_INGRESS: &str = "insp_tc_ingress";
pub const PROG_EGRESS: &str = "insp_tc_egress";
pub const PROG_DROPS: &str = "insp_kfree_skb";
/// The same drops from `tp_btf/kfree_skb` (plain loads instead of a read per field), used
/// where the kernel's BTF has the tracepoint.
pub const PROG_DROPS_BTF: &str = "insp_kfree_btf";
/// A tc program that does nothing (`ProbeOptions::empty`): the baseline of per-hook cost.
pub const PROG_EMPTY: &str = "insp_tc_empty";
/// The tc programs that say, through aya-log, what the two above decided (`--kernel-log`).
pub const PROG_LOG_INGRESS: &str = "insp_log_ingress";
pub const PROG_LOG_EGRESS: &str = "insp_log_egress";
pub const MAP_FLOWS: &str = "inspector_flows";
pub const MAP_FLOWS4: &str = "inspector_flow4";
pub const MAP_FCACHE: &str = "inspector_fcache";
pub const MAP_EVENTS: &str = "inspector_evts";
pub const MAP_STATS: &str = "inspector_stats";
pub const MAP_IFNS: &str = "inspector_ifns";
pub const MAP_DROPS: &str = "inspector_drops";
pub const MAP_CLOCK: &str = "inspector_clock";
pub const MAP_HOP_SEEN: &str = "inspector_hseen";
pub const MAP_HOP_HIST: &str = "inspector_hhist";
pub const MAP_HOP_SHIFT: &str = "inspector_hshift";
pub const MAP_ATTACHED: &str = "inspector_atch";
pub const MAP_GSEL: &str = "inspector_gsel";
/// The global hooks' programs: (program, tracepoint).
pub const GLOBAL_HOOKS: [(&str, &str); 2] = [
    ("insp_gl_receive", "netif_receive_skb"),
    ("insp_gl_xmit", "net_dev_start_xmit"),
];
/// Do-nothing programs on the same tracepoints (`ProbeOptions::empty` with global hooks).
pub const GLOBAL_EMPTY: [(&str, &str); 2] = [
    ("insp_gl_empty_rx", "netif_receive_skb"),
    ("insp_gl_empty_tx", "net_dev_start_xmit"),
];

/// The stack's packet tracepoints (`tp_btf`) and the programs on them: (program,
/// tracepoint, what is lost without it).
pub const STACK_HOOKS: [(&str, &str, &str); 3] = [
    (
        "insp_dev_queue",
        "net_dev_queue",
        "the time a packet waits in a device's qdisc",
    ),
    (
        "insp_start_xmit",
        "net_dev_start_xmit",
        "the time a packet waits in a device's qdisc",
    ),
    (
        "insp_receive",
        "netif_receive_skb",
        "the time from a device's receive to its tc ingress",
    ),
];

/// A program to attach: its descriptor and name.
type Prog = (std::os::fd::RawFd, &'static str);

/// How the tc programs go onto an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX links (Linux 6.6+): die with the process.
    Tcx,
    /// Legacy `clsact` + `cls_bpf` filters over netlink (see `legacy`).
    Tc,
    /// No per-interface attachment: two `tp_btf` programs on the stack's own packet
    /// tracepoints, attached once for the node, count the devices `inspector_gsel` selects
    /// (see the kernel crate's `tp_global`). Flows only.
    Global,
}

impl AttachMode {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Tc => "tc",
            Self::Global => "global",
        }
    }
}

/// How to load the programs.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Load-time filter and flags (events on/off, per-hop timing, fault injection).
    pub config: Config,
    /// Ring buffer size in bytes (power of two, multiple of the page size). Used only when
    /// events are on; otherwise one page.
    pub ring_bytes: u32,
    /// Capacity of the flow map.
    pub flow_entries: u32,
    /// Trace the kernel's drops (`skb:kfree_skb`; needs tracefs).
    pub drops: bool,
    /// Record socket owners (`cgroup_skb`, attached per cgroup) to attribute flows in
    /// shared namespaces.
    pub sockets: bool,
    /// Expedite RCU grace periods during large attach/detach batches (see `attach`).
    pub fast_attach: bool,
    /// Also load the stack's packet tracepoints (`STACK_HOOKS`) for the attached interfaces.
    pub stack_hooks: bool,
    /// Kernel-side debug logging (aya-log) at this level and above; `None`: off, and the
    /// verifier removes every log statement (the level is a load-time constant).
    pub kernel_log: Option<log::Level>,
    /// TCX or legacy tc; `None`: TCX where the kernel has it.
    pub attach: Option<AttachMode>,
    /// Global hooks: count devices nobody listed yet (`inspector_common::config::UNKNOWN_*`).
    pub global_unknown: u8,
    /// Attach `PROG_EMPTY` instead of the observing programs (`bench overhead`'s baseline:
    /// what a tc program costs before it does anything). Nothing is counted then.
    pub empty: bool,
    /// Count drops with the classic tracepoint even where `tp_btf/kfree_skb` is available.
    pub classic_drops: bool,
    /// A pcap-filter expression's kernel code (`pcap::Filter::code`): only packets it
    /// matches are counted and traced.
    pub filter: Option<Vec<u64>>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            config: Config::zeroed(),
            ring_bytes: 8 << 20,
            flow_entries: 65536,
            drops: true,
            sockets: true,
            fast_attach: false,
            stack_hooks: false,
            kernel_log: None,
            attach: None,
            global_unknown: inspector_common::config::UNKNOWN_SKIP,
            empty: false,
            classic_drops: false,
            filter: None,
        }
    }
}

/// The loaded programs and their attachments.
pub struct Probe {
    clock: std::cell::RefCell<clock::JiffiesClock>,
    /// Flows the flow cache held at the last read, as reported then (`fcache::merge`).
    cache_held: std::cell::RefCell<HashMap<inspector_common::FlowKey4, Counts>>,
    /// Flow records evicted, as of the last flows read (see `Probe::flows_evicted`).
    evicted: std::cell::Cell<u64>,
    ebpf: Ebpf,
    links: HashMap<AttachKey, attach::LinkPair>,
    /// Names of `enum skb_drop_reason` values, from the kernel's BTF or the tracepoint.
    drop_reasons: std::collections::BTreeMap<u32, String>,
    /// What could not be set up but did not stop the rest (said once, at start).
    pub warnings: Vec<String>,
    fast_attach: bool,
    /// How interfaces are attached (resolved at load).
    attach_mode: AttachMode,
    /// Per-hop timing's auto sampling shift, as last set (copied into `inspector_ifns`).
    hop_shift: u32,
    sockets_loaded: bool,
    /// `ProbeOptions::empty`: the empty program goes where the observing ones would.
    empty: bool,
    /// Global hooks: the tracepoints are attached (on the first `attach_many`, after the
    /// selection is written), and the interfaces told not to count (flows seen on them
    /// before are left out of `flows`).
    global_on: bool,
    excluded: std::collections::HashSet<AttachKey>,
    /// Cgroups the socket-owner programs are attached to.
    cgroup_links: sockets::Attached,
    /// The kernel's debug log, when on (it must live as long as the programs).
    logger: Option<log::KernelLogger>,
    /// The workload selection as last written.
    wsel: wsel::Written,
}

impl Probe {
    /// How this probe attaches interfaces.
    #[must_use]
    pub fn attach_mode(&self) -> AttachMode {
        self.attach_mode
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Closing a TCX link waits for an RCU grace period: close them all at once.
        self.detach_all();
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

/// A map of the loaded object by name.
fn map_ref<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a aya::maps::Map, ProbeError> {
    ebpf.map(name)
        .ok_or_else(|| error::map_err(name)(aya::maps::MapError::InvalidName { name: name.into() }))
}

/// The same, for writing.
fn map_mut_ref<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, ProbeError> {
    ebpf.map_mut(name)
        .ok_or_else(|| error::map_err(name)(aya::maps::MapError::InvalidName { name: name.into() }))
}

/// A program of the object by name.
fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::programs::Program, ProbeError> {
    ebpf.program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))
}
