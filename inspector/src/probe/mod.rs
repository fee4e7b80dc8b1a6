//! The only code that touches aya: load the kernel programs with their configuration, attach
//! them to interfaces in any namespace, read the maps and the ring buffer, and detach.
//!
//! [`Probe`] owns the loaded object and every link. Attachments are TCX links held as file
//! descriptors, so they vanish with the process however it ends (even SIGKILL), and dropping
//! the `Probe` detaches everything.
mod attach;
pub mod btf;
pub mod clock;
pub mod follow;
pub mod kallsyms;
pub mod preflight;
pub mod sockets;
pub mod tracefs;

use std::{collections::HashMap, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{ProgramError, SchedClassifier, TracePoint},
};
use inspector_common::{
    ClockSample, DropKey, FlowKey, FlowKey4, FlowStats,
    config::{CONFIG_GLOBAL, Config, FLAG_NETNS},
    flow::STAT_SLOTS,
};

pub use attach::AttachKey;

/// Names of the two tc programs in the object.
pub const PROG_INGRESS: &str = "insp_tc_ingress";
pub const PROG_EGRESS: &str = "insp_tc_egress";
pub const MAP_FLOWS: &str = "inspector_flows";
pub const MAP_FLOWS4: &str = "inspector_flow4";
pub const MAP_EVENTS: &str = "inspector_evts";
pub const MAP_STATS: &str = "inspector_stats";
pub const MAP_IFNS: &str = "inspector_ifns";
pub const MAP_DROPS: &str = "inspector_drops";
pub const MAP_CLOCK: &str = "inspector_clock";
pub const PROG_DROPS: &str = "insp_kfree_skb";
pub const MAP_HOP_SEEN: &str = "inspector_hseen";
pub const MAP_HOP_HIST: &str = "inspector_hhist";
pub const MAP_HOP_SHIFT: &str = "inspector_hshift";
pub const MAP_ATTACHED: &str = "inspector_atch";
/// The stack's packet tracepoints (`tp_btf`) and the programs on them (`trace --hops`).
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

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/inspector"));

/// What can go wrong in the probe; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "insufficient privileges (missing {0}): run as root, or grant CAP_BPF, CAP_PERFMON, \
         CAP_NET_ADMIN and CAP_SYS_ADMIN"
    )]
    NotPrivileged(String),
    #[error(
        "kernel has no BTF at {}: the inspector needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        .0.display()
    )]
    NoBtf(PathBuf),
    #[error(
        "kernel {0} has no TCX (needs Linux 6.6+): the legacy tc attach mode would leave filters \
         behind if the inspector were killed, so it is not used"
    )]
    NoTcx(String),
    #[error(
        "tracefs is not mounted at {} and mounting it failed ({error}): mount it with `mount -t \
         tracefs nodev /sys/kernel/tracing`, or run with --no-drops (drop reasons are then not \
         traced)",
        path.display()
    )]
    NoTracefs {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Kernel(String),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the kernel verifier rejected program {program} ({errno}); its log follows\n{log}")]
    Verifier {
        program: &'static str,
        errno: std::io::Error,
        log: String,
    },
    #[error(
        "program {program} needs bpf_probe_read_kernel() to tell namespaces apart, which this \
         kernel refuses (lockdown=confidentiality?): run without kernel lockdown"
    )]
    NoProbeRead { program: &'static str },
    #[error("{0}: the inspector cannot locate the namespace of a packet's device on this kernel")]
    Btf(#[from] btf::BtfError),
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("attaching to {ifname} in namespace {netns}: {source}")]
    Attach {
        ifname: String,
        netns: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How to load the programs.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Load-time filter and flags (events on/off, fault injection).
    pub config: Config,
    /// Ring buffer size in bytes (power of two, multiple of the page size). Used only when
    /// events are on; otherwise one page.
    pub ring_bytes: u32,
    /// Capacity of the flow map.
    pub flow_entries: u32,
    /// Trace the kernel's drops (`skb:kfree_skb`; needs tracefs).
    pub drops: bool,
    /// Record socket owners (`cgroup_skb` on the cgroup v2 root) to attribute flows in
    /// shared namespaces.
    pub sockets: bool,
    /// Expedite RCU grace periods during large attach/detach batches (see `attach`).
    pub fast_attach: bool,
    /// Also emit events from the stack's packet tracepoints (`STACK_HOOKS`) for the
    /// attached interfaces (needs events on).
    pub stack_hooks: bool,
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
        }
    }
}

/// One flow's counters summed over CPUs, with both times in `CLOCK_MONOTONIC` ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    /// Resolution: one kernel tick (1/HZ).
    pub last_ns: u64,
    pub tcp_flags: u8,
    pub status: u8,
}

/// The loaded programs and their attachments.
pub struct Probe {
    clock: std::cell::RefCell<clock::JiffiesClock>,
    ebpf: Ebpf,
    links: HashMap<AttachKey, attach::Pair>,
    /// Names of `enum skb_drop_reason` values, from the tracepoint's format.
    drop_reasons: std::collections::BTreeMap<u32, String>,
    /// What could not be set up but did not stop the rest (said once, at start).
    pub warnings: Vec<String>,
    fast_attach: bool,
    /// Per-hop timing's auto sampling shift, as last set (copied into `inspector_ifns`).
    hop_shift: u32,
    sockets_loaded: bool,
    /// Cgroups the socket-owner programs are attached to.
    cgroup_links: sockets::Attached,
}

impl Probe {
    /// Checks privileges and kernel features, then loads (but does not attach) the programs.
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        preflight::privileges()?;
        preflight::btf()?;
        preflight::tcx()?;
        let mut config = opts.config;
        let off = btf::kernel_offsets(&preflight::btf_path())?;
        config.off_skb_dev = off.skb_dev;
        config.off_dev_net = off.dev_net;
        config.off_net_inum = off.net_inum;
        config.off_dev_ifindex = off.dev_ifindex;
        config.off_skb_head = off.skb_head;
        config.off_skb_nh = off.skb_nh;
        config.off_skb_mac = off.skb_mac;
        config.off_skb_tail = off.skb_tail;
        config.off_skb_len = off.skb_len;
        config.off_skb_proto = off.skb_proto;
        config.off_skb_sk = off.skb_sk;
        config.off_sk_net = off.sk_net;
        config.flags |= FLAG_NETNS;
        let mut drop_reasons = std::collections::BTreeMap::new();
        let tracefs = if opts.drops {
            let path = tracefs::ensure_mounted()?;
            let fmt = tracefs::kfree_skb_format(&path)?;
            config.off_tp_skbaddr = fmt.off_skbaddr;
            config.off_tp_reason = fmt.off_reason;
            config.off_tp_location = fmt.off_location;
            // Names from the running kernel's BTF (`enum skb_drop_reason`); the format
            // file's symbol table only if BTF lacks the enum.
            drop_reasons = btf::drop_reasons(&preflight::btf_path()).unwrap_or(fmt.reasons);
            Some(path)
        } else {
            None
        };
        let events = config.flags & inspector_common::config::FLAG_EVENTS != 0;
        let ring = if events { opts.ring_bytes } else { 4096 };
        // A wake-up per 1/16 of the ring per CPU (records are the event plus an 8-byte header).
        let record = (std::mem::size_of::<inspector_common::PacketEvent>() + 8) as u32;
        config.ring_wake_events = (ring / 16 / record).max(1);
        // Per-hop timing's tables take ~0.6 MB per CPU: one entry each when it is off.
        let hoptime = config.flags & inspector_common::config::FLAG_HOPTIME != 0;
        let (seen, hist) = if hoptime {
            // Histograms: one block of slots per possible CPU (the programs index by CPU
            // number). Packets: one table, a power of two, larger with more CPUs.
            let cpus =
                u32::try_from(aya::util::nr_cpus().map_err(|(_, e)| {
                    ProbeError::Kernel(format!("reading the possible CPUs: {e}"))
                })?)
                .unwrap_or(1);
            let seen = inspector_common::hop::HOP_SEEN_SLOTS * cpus.next_power_of_two();
            config.hop_seen_mask = seen - 1;
            (seen, inspector_common::hop::HOP_HIST_SLOTS * cpus)
        } else {
            (1, 1)
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(MAP_HOP_SEEN, seen)
            .map_max_entries(MAP_HOP_HIST, hist)
            .map_max_entries(MAP_EVENTS, ring)
            .map_max_entries(MAP_FLOWS, opts.flow_entries)
            .map_max_entries(MAP_FLOWS4, opts.flow_entries)
            .load(OBJECT)?;
        for name in [PROG_INGRESS, PROG_EGRESS] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| ProbeError::Kernel(format!("program {name} missing from object")))?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    program: name,
                    source,
                })?;
            prog.load().map_err(|e| load_error(name, e))?;
        }
        if tracefs.is_some() {
            let prog: &mut TracePoint = ebpf
                .program_mut(PROG_DROPS)
                .ok_or_else(|| {
                    ProbeError::Kernel(format!("program {PROG_DROPS} missing from object"))
                })?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    program: PROG_DROPS,
                    source,
                })?;
            prog.load().map_err(|e| load_error(PROG_DROPS, e))?;
            prog.attach("skb", "kfree_skb")
                .map_err(|source| ProbeError::Program {
                    program: PROG_DROPS,
                    source,
                })?;
        }
        let mut warnings = Vec::new();
        if opts.stack_hooks {
            warnings.extend(load_stack_hooks(&mut ebpf));
        }
        let mut sockets_loaded = false;
        if opts.sockets {
            match sockets::load(&mut ebpf) {
                Ok(()) => sockets_loaded = true,
                Err(e) => warnings.push(format!(
                    "socket owners are not recorded ({e}): flows in namespaces shared by \
                     several containers, and host-mode containers, are not attributed"
                )),
            }
        }
        Ok(Self {
            clock: std::cell::RefCell::new(clock::JiffiesClock::new(
                1_000_000_000 / clock::kernel_hz(),
            )),
            ebpf,
            links: HashMap::new(),
            drop_reasons,
            warnings,
            fast_attach: opts.fast_attach,
            hop_shift: 0,
            sockets_loaded,
            cgroup_links: sockets::Attached::new(),
        })
    }

    /// Packets the kernel dropped, per (flow, device, reason), summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(DropKey, Counts)>, ProbeError> {
        let clock = self.clock()?;
        let Some(map) = self.ebpf.map(MAP_DROPS) else {
            return Ok(Vec::new());
        };
        let map: PerCpuHashMap<&MapData, DropKey, FlowStats> =
            PerCpuHashMap::try_from(map).map_err(map_err(MAP_DROPS))?;
        Ok(map
            .iter()
            .flatten()
            .map(|(k, v)| (k, sum(v.iter(), &clock)))
            .collect())
    }

    /// Name of a drop reason ("`NO_SOCKET`"), or its number.
    #[must_use]
    pub fn drop_reason(&self, reason: u32) -> String {
        self.drop_reasons
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("reason_{reason}"))
    }

    /// Every (namespace, ifindex) both programs are attached to.
    pub fn attached(&self) -> impl Iterator<Item = &AttachKey> {
        self.links.keys()
    }

    /// Summed per-CPU flow counters, one entry per (flow, hook), IPv4 ones widened to the
    /// full key.
    pub fn flows(&self) -> Result<Vec<(FlowKey, Counts)>, ProbeError> {
        let clock = self.clock()?;
        let mut out = Vec::new();
        let full: PerCpuHashMap<&MapData, FlowKey, FlowStats> =
            PerCpuHashMap::try_from(map_ref(&self.ebpf, MAP_FLOWS)?).map_err(map_err(MAP_FLOWS))?;
        // An entry evicted between get_next_key and lookup is simply skipped.
        for (k, per_cpu) in full.iter().flatten() {
            out.push((k, sum(per_cpu.iter(), &clock)));
        }
        let v4: PerCpuHashMap<&MapData, FlowKey4, FlowStats> =
            PerCpuHashMap::try_from(map_ref(&self.ebpf, MAP_FLOWS4)?)
                .map_err(map_err(MAP_FLOWS4))?;
        for (k, per_cpu) in v4.iter().flatten() {
            out.push((k.widen(), sum(per_cpu.iter(), &clock)));
        }
        Ok(out)
    }

    /// The kernel-side counters, indexed like `inspector_common::Stat`.
    pub fn stats(&self) -> Result<[u64; STAT_SLOTS as usize], ProbeError> {
        let err = map_err(MAP_STATS);
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map_ref(&self.ebpf, MAP_STATS)?).map_err(err)?;
        let mut out = [0u64; STAT_SLOTS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = arr.get(&(i as u32), 0).map_err(err)?.iter().sum();
        }
        Ok(out)
    }

    /// Keeps the socket-owner programs attached to exactly the cgroups in `wanted` (id,
    /// directory). Returns what failed, one message per cgroup.
    pub fn watch_sockets(&mut self, wanted: &[(u64, std::path::PathBuf)]) -> Vec<String> {
        if !self.sockets_loaded {
            return Vec::new();
        }
        let keep: std::collections::HashSet<u64> = wanted.iter().map(|(id, _)| *id).collect();
        let gone: Vec<u64> = self
            .cgroup_links
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(l) = self.cgroup_links.remove(&id) {
                sockets::detach(&mut self.ebpf, l);
            }
        }
        let mut errors = Vec::new();
        for (id, dir) in wanted {
            if self.cgroup_links.contains_key(id) {
                continue;
            }
            match sockets::attach(&mut self.ebpf, dir) {
                Ok(l) => {
                    self.cgroup_links.insert(*id, l);
                }
                Err(e) => errors.push(format!("socket owners in {}: {e}", dir.display())),
            }
        }
        errors
    }

    /// How many cgroups the socket-owner programs watch.
    #[must_use]
    pub fn watched_cgroups(&self) -> usize {
        self.cgroup_links.len()
    }

    /// Socket owners the kernel recorded (see `sockets`).
    pub fn socket_owners(&self) -> Result<crate::identity::SocketOwners, ProbeError> {
        sockets::owners(&self.ebpf)
    }

    /// Per-hop timing: every histogram in use, one per transition per CPU that recorded it
    /// (`flows::hops::kernel_rows` merges them).
    pub fn hop_hists(&self) -> Result<Vec<inspector_common::hop::HopHist>, ProbeError> {
        let err = map_err(MAP_HOP_HIST);
        let arr: aya::maps::Array<&MapData, inspector_common::hop::HopHist> =
            aya::maps::Array::try_from(map_ref(&self.ebpf, MAP_HOP_HIST)?).map_err(err)?;
        let mut out = Vec::new();
        for i in 0..arr.len() {
            let h = arr.get(&i, 0).map_err(err)?;
            if h.tag.used != 0 {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Per-hop timing in auto mode: time 1 packet in 2^`shift` from now on.
    pub fn set_hop_shift(&mut self, shift: u32) -> Result<(), ProbeError> {
        let err = map_err(MAP_HOP_SHIFT);
        let shift = shift.min(inspector_common::hop::HOP_MAX_SHIFT);
        let mut arr: aya::maps::Array<&mut MapData, u32> =
            aya::maps::Array::try_from(map_mut_ref(&mut self.ebpf, MAP_HOP_SHIFT)?).map_err(err)?;
        arr.set(0, shift, 0).map_err(err)?;
        self.hop_shift = shift;
        self.spread_hop_shift()
    }

    /// Takes the ring buffer of per-packet events (present only once).
    pub fn take_events(&mut self) -> Result<RingBuf<aya::maps::MapData>, ProbeError> {
        let map = self.ebpf.take_map(MAP_EVENTS).ok_or_else(|| {
            map_err(MAP_EVENTS)(aya::maps::MapError::InvalidName {
                name: MAP_EVENTS.into(),
            })
        })?;
        RingBuf::try_from(map).map_err(map_err(MAP_EVENTS))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Closing a TCX link waits for an RCU grace period: close them all at once.
        self.detach_all();
    }
}

impl Probe {
    /// Folds the (jiffies, ns) pair each CPU recorded last into the jiffies clock, and
    /// returns it. Cheap (one map lookup); the main loops call it often so the clock sees
    /// many samples.
    pub fn clock(&self) -> Result<clock::JiffiesClock, ProbeError> {
        let err = map_err(MAP_CLOCK);
        let arr: PerCpuArray<&MapData, ClockSample> =
            PerCpuArray::try_from(map_ref(&self.ebpf, MAP_CLOCK)?).map_err(err)?;
        let mut clock = self.clock.borrow_mut();
        for s in arr.get(&0, 0).map_err(err)?.iter() {
            clock.observe(*s);
        }
        Ok(*clock)
    }
}

fn sum<'a>(vals: impl Iterator<Item = &'a FlowStats>, clock: &clock::JiffiesClock) -> Counts {
    let mut s = Counts::default();
    for v in vals {
        if v.packets == 0 {
            continue;
        }
        s.packets += v.packets;
        s.bytes += v.bytes;
        if v.first_ns != 0 {
            s.first_ns = if s.first_ns == 0 {
                v.first_ns
            } else {
                s.first_ns.min(v.first_ns)
            };
        }
        // last seen has one tick of resolution and may trail a precise first_ns.
        let last = if v.packets == 1 && v.first_ns != 0 {
            v.first_ns // one packet on this CPU: its precise time is known
        } else {
            clock.to_ns(v.last_jiffies).max(v.first_ns)
        };
        s.last_ns = s.last_ns.max(last);
        s.tcp_flags |= v.tcp_flags;
        s.status |= v.status;
    }
    s
}

/// Loads and attaches the stack's tracepoint programs; one warning per hook that could not
/// be (what is lost and why).
fn load_stack_hooks(ebpf: &mut Ebpf) -> Vec<String> {
    let btf = match aya::Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => {
            return vec![format!(
                "the stack's packet tracepoints (net_dev_queue, net_dev_start_xmit, \
                 netif_receive_skb) are not traced: reading the kernel's BTF failed ({e}); \
                 hops show tc only"
            )];
        }
    };
    let mut warnings = Vec::new();
    for (prog, tp, lost) in STACK_HOOKS {
        let r = (|| -> Result<(), String> {
            let p: &mut aya::programs::BtfTracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| format!("program {prog} missing from object"))?
                .try_into()
                .map_err(|e: ProgramError| e.to_string())?;
            p.load(tp, &btf).map_err(|e| e.to_string())?;
            p.attach().map_err(|e| e.to_string())?;
            Ok(())
        })();
        if let Err(e) = r {
            warnings.push(format!(
                "tp_btf/{tp} is not traced ({e}): hops lack {lost}; run on a kernel with \
                 BTF-enabled raw tracepoints (Linux 5.5+) to see it"
            ));
        }
    }
    warnings
}

/// The error for a failure on map `name`.
fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError + Copy {
    move |source| ProbeError::Map { map: name, source }
}

/// A map of the loaded object by name.
fn map_ref<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a aya::maps::Map, ProbeError> {
    ebpf.map(name)
        .ok_or_else(|| map_err(name)(aya::maps::MapError::InvalidName { name: name.into() }))
}

/// The same, for writing.
fn map_mut_ref<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, ProbeError> {
    ebpf.map_mut(name)
        .ok_or_else(|| map_err(name)(aya::maps::MapError::InvalidName { name: name.into() }))
}

fn load_error(program: &'static str, e: ProgramError) -> ProbeError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.contains("bpf_probe_read_kernel") {
                ProbeError::NoProbeRead { program }
            } else {
                ProbeError::Verifier {
                    program,
                    errno: io_error,
                    log,
                }
            }
        }
        source => ProbeError::Program { program, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 jiffy = 1 µs, jiffies 0 at ns 0.
    const CLOCK: clock::JiffiesClock = clock::JiffiesClock {
        tick_ns: 1000,
        offset: Some(0),
    };

    fn slot(packets: u64, first_ns: u64, last_jiffies: u64) -> FlowStats {
        FlowStats {
            packets,
            bytes: packets * 100,
            first_ns,
            last_jiffies,
            tcp_flags: 0,
            status: 0,
            _pad: [0; 6],
        }
    }

    /// Regression: a CPU whose slot was created by another CPU's insert once reported
    /// `first_ns` = 0, and the merge took that as the earliest time, so paths were mis-ordered.
    #[test]
    fn merge_ignores_unset_first_seen_and_empty_slots() {
        let s = sum(
            [
                slot(3, 500, 9),
                slot(0, 0, 0),
                slot(2, 0, 10),
                slot(1, 450, 5),
            ]
            .iter(),
            &CLOCK,
        );
        assert_eq!(
            (s.packets, s.bytes, s.first_ns, s.last_ns),
            (6, 600, 450, 10_000)
        );
    }

    /// Last seen has one tick of resolution and may trail the precise first seen.
    #[test]
    fn merge_never_reports_last_before_first() {
        let s = sum([slot(1, 1_000_123, 1000)].iter(), &CLOCK);
        assert!(s.last_ns >= s.first_ns);
    }
}
