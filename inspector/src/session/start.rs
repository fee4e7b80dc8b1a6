//! Starting a session: nothing touches the kernel until every input has been checked
//! against the live node (namespaces, interfaces, the Service named), so a bad input changes
//! nothing.
use std::{cell::RefCell, collections::HashMap};

use inspector_common::{
    config::{
        Config, FLAG_EVENTS, FLAG_FAULT_VERIFIER, FLAG_HOPTIME, FLAG_STACK, FLAG_WHOLE,
        HOP_SHIFT_AUTO,
    },
    flow::{SNAP_LEN, SNAP_MAX},
};

use super::{
    Change, Lifecycle, Measure, Options, Sampling, Selection, Session, SessionError, latency,
};
use crate::{
    identity::Tracker,
    probe::{Probe, ProbeOptions, preflight},
    services::{attrib::Services, counters, read},
    sys::time::WallClock,
    topology::{self, Netns, NsidCache, Topology, names::Names},
};

/// Resolves a `--netns` value to a namespace on this node: an inode, a path, an `ip netns`
/// name, or a Docker sandbox by id (or unique prefix of 4+), with or without "docker:".
pub fn resolve_netns<'a>(spec: &str, all: &'a [Netns]) -> Result<&'a Netns, SessionError> {
    let found = if let Ok(ino) = spec.parse::<u64>() {
        all.iter().find(|n| n.inode == ino)
    } else if spec.starts_with('/') {
        use std::os::unix::fs::MetadataExt as _;
        let ino = std::fs::metadata(spec).map(|m| m.ino()).ok();
        all.iter().find(|n| Some(n.inode) == ino)
    } else {
        all.iter().find(|n| n.name == spec).or_else(|| {
            let id = spec.strip_prefix("docker:").unwrap_or(spec);
            let mut m = all.iter().filter(|n| {
                n.kind == topology::NetnsKind::Docker
                    && id.len() >= 4
                    && n.name.trim_start_matches("docker:").starts_with(id)
            });
            match (m.next(), m.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        })
    };
    found.ok_or_else(|| SessionError::UnknownNetns(spec.to_owned()))
}

/// `--service NAMESPACE/NAME`: two DNS labels (checked before anything is attached).
pub fn check_service_name(s: &str) -> Result<(), SessionError> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match s.split_once('/') {
        Some((ns, name)) if label(ns) && label(name) => Ok(()),
        _ => Err(SessionError::BadServiceName(s.to_owned())),
    }
}

/// The selected namespaces, and the one interface the kernel-side filter may pin.
fn selection(
    opts: &Options,
    all: &[Netns],
) -> Result<(Selection, Option<(String, u32)>), SessionError> {
    let mut sel = Selection {
        netns: Vec::new(),
        interfaces: opts.interfaces.clone(),
        lo: opts.lo,
        devices: opts.devices,
        all: opts.all_interfaces,
    };
    for spec in &opts.netns {
        sel.netns.push(resolve_netns(spec, all)?.inode);
    }
    if opts.interfaces.is_empty() {
        return Ok((sel, None));
    }
    let mut found = std::collections::HashSet::new();
    let mut matches = Vec::new();
    for ns in all.iter().filter(|n| sel.wants_ns(n.inode)) {
        if let Ok(view) = topology::scan_ns(ns) {
            for l in &view.links {
                if opts.interfaces.contains(&l.name) {
                    found.insert(l.name.clone());
                    matches.push((l.name.clone(), l.ifindex));
                }
            }
        }
    }
    if let Some(missing) = opts.interfaces.iter().find(|i| !found.contains(*i)) {
        return Err(SessionError::UnknownInterface {
            name: missing.clone(),
            scope: if opts.netns.is_empty() {
                "any namespace"
            } else {
                "the selected namespaces"
            },
        });
    }
    // One interface in one namespace: the programs also check its ifindex (programs only
    // run where attached anyway; this keeps events exact if the selection widens).
    let pinned = match matches.as_slice() {
        [(name, ifindex)] if sel.netns.len() == 1 => Some((name.clone(), *ifindex)),
        _ => None,
    };
    Ok((sel, pinned))
}

/// The attach mode when none was asked for: the global hooks for counting and tracing where
/// the kernel has their tracepoints (a new device is seen from its first packet, and
/// nothing is attached per interface: see docs/architecture.md); per-hop timing and
/// `trace --hops` stay on the per-device tc hooks (`None`: TCX, else legacy tc), whose places
/// in the path they time.
fn default_attach(opts: &Options) -> Option<crate::probe::AttachMode> {
    opts.attach.or_else(|| match opts.measure {
        Measure::Flows | Measure::Events { hops: false, .. }
            if crate::probe::preflight::global_hooks() =>
        {
            Some(crate::probe::AttachMode::Global)
        }
        _ => None,
    })
}

/// Global hooks: what the programs do with a device userspace has not listed yet. With the
/// default selection (every namespace, by kind) they count it, so a new veth is seen from
/// its first packet (loopback only when asked for); with `--netns` only devices of the
/// selected namespaces (`Probe::select_namespaces`), with `--interface` only those named.
fn global_unknown(sel: &Selection) -> u8 {
    use inspector_common::config::{UNKNOWN_COUNT, UNKNOWN_COUNT_LO, UNKNOWN_SKIP};
    if !sel.netns.is_empty() || !sel.interfaces.is_empty() {
        UNKNOWN_SKIP
    } else if sel.all || sel.lo {
        UNKNOWN_COUNT_LO
    } else {
        UNKNOWN_COUNT
    }
}

/// The load-time configuration: filter, pinned namespace and interface, what is measured.
fn config(opts: &Options, sel: &Selection, pinned: Option<&(String, u32)>) -> Config {
    let mut cfg = Config::zeroed();
    if let Some((_, ifindex)) = pinned {
        cfg.ifindex = *ifindex;
    }
    if sel.netns.len() == 1 {
        cfg.netns = u32::try_from(sel.netns[0]).unwrap_or(0);
    }
    opts.filter.apply_to(&mut cfg);
    cfg.wsel = opts.selectors.mode();
    match opts.measure {
        Measure::Flows => {}
        Measure::Events { stack, snaplen, .. } => {
            cfg.flags |= FLAG_EVENTS;
            if stack {
                cfg.flags |= FLAG_STACK;
            }
            if snaplen > SNAP_LEN as u32 {
                cfg.flags |= FLAG_WHOLE;
                cfg.snaplen = snaplen.min(SNAP_MAX as u32);
            }
        }
        Measure::LatencyFromEvents { .. } => cfg.flags |= FLAG_EVENTS,
        Measure::HopTiming { sample, stack } => {
            cfg.flags |= FLAG_HOPTIME;
            if stack {
                cfg.flags |= FLAG_STACK;
            }
            cfg.hop_sample_shift = match sample {
                Sampling::Auto => HOP_SHIFT_AUTO,
                Sampling::Shift(s) => u8::try_from(s).unwrap_or(0),
            };
        }
    }
    // Fault injection, for the test of verifier-error reporting only.
    if std::env::var("INSPECTOR_FAULT").as_deref() == Ok("verifier") {
        cfg.flags |= FLAG_FAULT_VERIFIER;
    }
    cfg
}

impl Session {
    /// Checks privileges, validates every input against the live node, loads the programs,
    /// attaches them, and writes the ready file. Nothing is attached if any check fails.
    /// Returns the session and what starting it did (attachments, warnings).
    pub fn start(opts: &Options) -> Result<(Self, Vec<Change>), SessionError> {
        if let Some(s) = &opts.filter.service {
            check_service_name(s)?;
        }
        let attach = default_attach(opts);
        if attach == Some(crate::probe::AttachMode::Global) {
            match opts.measure {
                Measure::Flows | Measure::Events { .. } => {}
                Measure::HopTiming { .. } | Measure::LatencyFromEvents { .. } => {
                    return Err(SessionError::GlobalFlowsOnly("per-hop latency"));
                }
            }
        }
        preflight::privileges()?;
        let all = topology::netns::discover();
        let (selection, pinned) = selection(opts, &all)?;
        let cfg = config(opts, &selection, pinned.as_ref());
        let (ring_bytes, stack_hooks) = match opts.measure {
            Measure::Events {
                ring_bytes, stack, ..
            } => (ring_bytes, stack),
            Measure::LatencyFromEvents { ring_bytes } => (ring_bytes, false),
            Measure::HopTiming { stack, .. } => (4096, stack),
            Measure::Flows => (4096, false),
        };
        // Filters of ours left by an inspector that died (legacy tc only) go before ours come,
        // in the namespaces this session follows (all of them by default).
        let followed: Vec<Netns> = all
            .iter()
            .filter(|n| selection.netns.is_empty() || selection.netns.contains(&n.inode))
            .cloned()
            .collect();
        let (swept, sweep_errors) = crate::probe::cleanup::sweep(&followed, false);
        let probe = Probe::load(&ProbeOptions {
            config: cfg,
            drops: opts.drops,
            ring_bytes,
            flow_entries: opts.max_flows,
            sockets: opts.socket_owners,
            fast_attach: opts.fast_attach,
            stack_hooks,
            kernel_log: opts.kernel_log,
            attach,
            empty: opts.empty_programs,
            classic_drops: opts.classic_drops,
            filter: opts.filter.expression.as_ref().map(|f| f.code.clone()),
            global_unknown: global_unknown(&selection),
        })?;
        let mut changes: Vec<Change> = probe.warnings.iter().cloned().map(Change::Note).collect();
        changes.extend(swept.iter().map(|r| Change::Note(r.to_string())));
        changes.extend(
            sweep_errors
                .into_iter()
                .map(|e| Change::Note(format!("looking for filters left by a killed run: {e}"))),
        );
        let (mut tracker, notes) = Tracker::new(&opts.identity);
        changes.extend(notes.into_iter().map(Change::Note));
        changes.extend(tracker.refresh().into_iter().map(Change::Note));
        let mut s = Self {
            probe,
            selection,
            names: Names::default(),
            topology: Topology::default(),
            identity: tracker,
            cache: NsidCache::default(),
            owners: RefCell::default(),
            services: None,
            nf_counters: HashMap::new(),
            nf_rules: RefCell::default(),
            kept: RefCell::default(),
            lifecycle: opts.lifecycle.then(|| Lifecycle {
                namer: crate::identity::lifecycle::Namer::default(),
                events: Vec::new(),
            }),
            filter: opts.filter.clone(),
            pinned,
            clock: WallClock::now(),
            attached_as: std::collections::HashMap::new(),
            reported: std::collections::HashSet::new(),
            reported_services: RefCell::default(),
            notes: RefCell::default(),
            latency: None,
            // Before the first scan: a change after it is heard.
            watch: crate::topology::watch::LinkWatch::new().ok(),
            workloads: (!opts.selectors.is_empty())
                .then(|| super::workloads::Workloads::new(opts.selectors.clone())),
        };
        if opts.services || opts.filter.service.is_some() {
            s.enable_services()?;
        }
        s.latency = latency::Latency::start(&mut s.probe, opts.measure)?;
        if s.selection.interfaces.is_empty() {
            s.probe.select_namespaces(&s.selection.netns)?;
        }
        changes.extend(s.reconcile());
        if let Some(p) = &opts.ready_file {
            write_ready(p)?;
        }
        Ok((s, changes))
    }

    /// Turns Service attribution on: reads the rules of the host and lab nodes now, and the
    /// DROP/REJECT rule counters of each (to name the rule behind a netfilter drop).
    fn enable_services(&mut self) -> Result<(), SessionError> {
        let mut svc = Services::new();
        svc.refresh_rules(true);
        if let Some(want) = &self.filter.service
            && !svc.entries().any(|(_, e)| &e.ns_name() == want)
        {
            let nodes: Vec<String> = read::nodes().into_iter().map(|n| n.name).collect();
            return Err(SessionError::UnknownService {
                name: want.clone(),
                nodes: nodes.join(", "),
            });
        }
        self.services = Some(RefCell::new(svc));
        for n in read::nodes() {
            let path = n
                .netns
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/ns/net"));
            if let Ok(m) = std::fs::metadata(&path) {
                use std::os::unix::fs::MetadataExt as _;
                let snap = counters::snapshot(n.netns.as_deref());
                self.nf_counters.insert(m.ino(), (n.netns, snap));
            }
        }
        Ok(())
    }
}

impl Session {
    /// A session around a probe already loaded, following only the namespaces `netns`
    /// (inodes), with no Service attribution and nothing attached yet: `reconcile` attaches.
    /// For `bench scale`, which times loading and attaching apart.
    #[must_use]
    pub fn with_probe(probe: Probe, netns: Vec<u64>) -> Self {
        Self {
            probe,
            selection: Selection {
                netns,
                ..Selection::default()
            },
            names: Names::default(),
            topology: Topology::default(),
            identity: Tracker::default(),
            cache: NsidCache::default(),
            owners: RefCell::default(),
            services: None,
            nf_counters: HashMap::new(),
            nf_rules: RefCell::default(),
            kept: RefCell::default(),
            lifecycle: None,
            filter: crate::flows::filter::Filter::default(),
            pinned: None,
            clock: WallClock::now(),
            attached_as: std::collections::HashMap::new(),
            reported: std::collections::HashSet::new(),
            reported_services: RefCell::default(),
            notes: RefCell::default(),
            latency: None,
            watch: None,
            workloads: None,
        }
    }
}

/// Writes our pid to `path`: the signal to a script that everything is attached.
pub(crate) fn write_ready(path: &std::path::Path) -> Result<(), SessionError> {
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
        SessionError::ReadyFile {
            path: path.to_path_buf(),
            source,
        }
    })
}
