//! Loading: preflight checks, kernel struct offsets and the drop tracepoint's layout into the
//! load-time configuration, map sizes, then each program (the verifier's log on refusal).
use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, TracePoint},
};
use inspector_common::config::{FLAG_EVENTS, FLAG_HOPTIME, FLAG_NETNS};

use super::{
    GLOBAL_EMPTY, GLOBAL_HOOKS, MAP_EVENTS, MAP_FLOWS, MAP_FLOWS4, MAP_HOP_HIST, MAP_HOP_SEEN,
    PROG_DROPS, PROG_DROPS_BTF, PROG_EGRESS, PROG_EMPTY, PROG_INGRESS, PROG_LOG_EGRESS,
    PROG_LOG_INGRESS, Probe, ProbeError, ProbeOptions, STACK_HOOKS, btf, clock,
    error::{load_error, program_err},
    preflight, program, sockets, tracefs,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/inspector"));

impl Probe {
    /// Checks privileges and kernel features, then loads (but does not attach) the programs.
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        preflight::privileges()?;
        preflight::btf()?;
        let attach_mode = preflight::attach_mode(opts.attach)?;
        let global = attach_mode == super::AttachMode::Global;
        let mut config = opts.config;
        let off = btf::kernel_offsets(&preflight::btf_path())?;
        config.off_skb_dev = off.skb_dev;
        config.off_dev_net = off.dev_net;
        config.off_net_inum = off.net_inum;
        config.off_dev_ifindex = off.dev_ifindex;
        config.off_skb_head = off.skb_head;
        config.off_skb_data = off.skb_data;
        config.off_skb_nh = off.skb_nh;
        config.off_skb_mac = off.skb_mac;
        config.off_skb_tail = off.skb_tail;
        config.off_skb_len = off.skb_len;
        config.off_skb_proto = off.skb_proto;
        config.off_skb_mark = off.skb_mark;
        config.off_skb_sk = off.skb_sk;
        config.off_sk_net = off.sk_net;
        config.off_skb_vlan = off.skb_vlan;
        config.off_skb_vlan_present = off.skb_vlan_present;
        config.flags |= FLAG_NETNS;
        let mut no_reason = false;
        let mut drop_reasons = std::collections::BTreeMap::new();
        if opts.drops {
            let path = tracefs::ensure_mounted()?;
            let fmt = tracefs::kfree_skb_format(&path)?;
            config.off_tp_skbaddr = fmt.off_skbaddr;
            config.off_tp_reason = fmt.off_reason;
            no_reason = fmt.off_reason == inspector_common::config::NO_DROP_REASON;
            config.off_tp_location = fmt.off_location;
            // Names from the running kernel's BTF (`enum skb_drop_reason`); the format
            // file's symbol table only if BTF lacks the enum.
            drop_reasons = btf::drop_reasons(&preflight::btf_path()).unwrap_or(fmt.reasons);
        }
        let events = config.flags & FLAG_EVENTS != 0;
        let ring = if events { opts.ring_bytes } else { 4096 };
        // A wake-up per 1/16 of the ring per CPU (records are the event plus an 8-byte header).
        let record = (std::mem::size_of::<inspector_common::PacketEvent>() + 8) as u32;
        config.ring_wake_events = (ring / 16 / record).max(1);
        // Per-hop timing's tables take ~0.6 MB per CPU: one entry each when it is off.
        let (seen, hist) = if config.flags & FLAG_HOPTIME != 0 {
            // Histograms: one block of slots per possible CPU (the programs index by CPU
            // number). Packets: one table, a power of two, larger with more CPUs.
            let cpus =
                u32::try_from(aya::util::nr_cpus().map_err(|(_, e)| ProbeError::PossibleCpus(e))?)
                    .unwrap_or(1);
            let seen = inspector_common::hop::HOP_SEEN_SLOTS * cpus.next_power_of_two();
            config.hop_seen_mask = seen - 1;
            (seen, inspector_common::hop::HOP_HIST_SLOTS * cpus)
        } else {
            (1, 1)
        };
        if global {
            config.flags |= inspector_common::config::FLAG_GLOBAL;
            config.global_unknown = opts.global_unknown;
        }
        let patched = match &opts.filter {
            Some(code) => {
                config.flags |= inspector_common::config::FLAG_PCAP;
                Some(super::pcap::patch::patch(OBJECT, code).map_err(ProbeError::FilterPatch)?)
            }
            None => None,
        };
        let object = patched
            .as_deref()
            .map_or(OBJECT, |w| super::pcap::patch::bytes(w, OBJECT.len()));
        let level = opts.kernel_log.map_or(0u8, |l| l as u8);
        let mut ebpf = EbpfLoader::new()
            .override_global(inspector_common::config::CONFIG_GLOBAL, &config, true)
            .override_global(aya_log::LEVEL, &level, true)
            .map_max_entries(MAP_HOP_SEEN, seen)
            .map_max_entries(MAP_HOP_HIST, hist)
            .map_max_entries(MAP_EVENTS, ring)
            .map_max_entries(MAP_FLOWS, opts.flow_entries)
            .map_max_entries(MAP_FLOWS4, opts.flow_entries)
            .load(object)?;
        // The log ring is read from before any program can write to it.
        let logger = match opts.kernel_log {
            Some(_) => Some(super::log::KernelLogger::new(&mut ebpf)?),
            None => None,
        };
        let log_progs: &[&str] = if logger.is_some() && !global {
            &[PROG_LOG_INGRESS, PROG_LOG_EGRESS]
        } else {
            &[]
        };
        let observing: &[&str] = if global {
            &[]
        } else if opts.empty {
            &[PROG_EMPTY]
        } else {
            &[PROG_INGRESS, PROG_EGRESS]
        };
        for &name in observing.iter().chain(log_progs) {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?
                .try_into()
                .map_err(program_err(name))?;
            prog.load().map_err(|e| load_error(name, e))?;
        }
        if opts.drops && (opts.classic_drops || !load_drops_btf(&mut ebpf)) {
            let prog: &mut TracePoint = program(&mut ebpf, PROG_DROPS)?
                .try_into()
                .map_err(program_err(PROG_DROPS))?;
            prog.load().map_err(|e| load_error(PROG_DROPS, e))?;
            prog.attach("skb", "kfree_skb")
                .map_err(program_err(PROG_DROPS))?;
        }
        let mut warnings = Vec::new();
        if no_reason {
            warnings.push(
                "skb:kfree_skb has no reason field (Linux 5.17+ has it): drops are counted, all \
                 as NOT_SPECIFIED"
                    .to_owned(),
            );
        }
        if opts.attach.is_none() && attach_mode == super::AttachMode::Tc {
            warnings.push(
                "this kernel has no TCX: the tc programs go in as legacy cls_bpf filters \
                 (priority 1, ahead of others); if the inspector is killed they stay until its \
                 next start or `inspector cleanup`"
                    .to_owned(),
            );
        }
        if opts.stack_hooks {
            warnings.extend(load_stack_hooks(&mut ebpf));
        }
        if global {
            load_global_hooks(&mut ebpf, opts.empty)?;
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
            cache_held: std::cell::RefCell::default(),
            evicted: std::cell::Cell::default(),
            clock: std::cell::RefCell::new(clock::JiffiesClock::new(
                1_000_000_000 / clock::kernel_hz(),
            )),
            ebpf,
            links: std::collections::HashMap::new(),
            drop_reasons,
            warnings,
            fast_attach: opts.fast_attach,
            attach_mode,
            hop_shift: 0,
            sockets_loaded,
            empty: opts.empty,
            global_on: false,
            excluded: std::collections::HashSet::new(),
            wsel: super::wsel::Written::default(),
            cgroup_links: sockets::Attached::new(),
            logger,
        })
    }
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
        if super::fault::hook_missing(tp) {
            warnings.push(format!(
                "tp_btf/{tp} is not traced (this kernel has no such tracepoint: fault \
                 injected): hops lack {lost}"
            ));
            continue;
        }
        let r = program(ebpf, prog).and_then(|p| {
            let p: &mut aya::programs::BtfTracePoint = p.try_into().map_err(program_err(prog))?;
            p.load(tp, &btf).map_err(|e| load_error(prog, e))?;
            p.attach().map_err(program_err(prog))?;
            Ok(())
        });
        if let Err(e) = r {
            warnings.push(format!(
                "tp_btf/{tp} is not traced ({e}): hops lack {lost}; run on a kernel with \
                 BTF-enabled raw tracepoints (Linux 5.5+) to see it"
            ));
        }
    }
    warnings
}

/// Loads and attaches the `tp_btf` drop program where the kernel's BTF has the tracepoint;
/// `false` (nothing held) where it does not, or the kernel refuses it: the classic
/// tracepoint then counts the same drops.
fn load_drops_btf(ebpf: &mut Ebpf) -> bool {
    if super::fault::hook_missing("kfree_skb") {
        return false;
    }
    let Ok(btf) = aya::Btf::from_sys_fs() else {
        return false;
    };
    let Ok(p) = program(ebpf, PROG_DROPS_BTF) else {
        return false;
    };
    let Ok(p): Result<&mut aya::programs::BtfTracePoint, _> = p.try_into() else {
        return false;
    };
    if p.load("kfree_skb", &btf).is_err() {
        return false;
    }
    if p.attach().is_err() {
        let _ = p.unload();
        return false;
    }
    true
}

/// Loads (not attaches) the global hooks' programs; they are attached once the selection is
/// in `inspector_gsel` (`Probe::attach_many`).
fn load_global_hooks(ebpf: &mut Ebpf, empty: bool) -> Result<(), ProbeError> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::GlobalBtf(e.to_string()))?;
    for (prog, tp) in if empty { GLOBAL_EMPTY } else { GLOBAL_HOOKS } {
        if super::fault::hook_missing(tp) {
            return Err(ProbeError::GlobalBtf(format!(
                "no tracepoint {tp}: fault injected"
            )));
        }
        let p: &mut aya::programs::BtfTracePoint =
            program(ebpf, prog)?.try_into().map_err(program_err(prog))?;
        p.load(tp, &btf).map_err(|e| load_error(prog, e))?;
    }
    Ok(())
}
