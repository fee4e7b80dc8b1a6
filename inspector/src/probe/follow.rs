//! Keeping the attachments in step with the node: every rescan attaches to interfaces that
//! appeared (new namespaces, new veths) and lets go of ones that vanished, without a restart.
use std::collections::HashMap;
use std::collections::HashSet;

use super::{AttachKey, Probe, ProbeError};
use crate::identity::{Resolver, SocketOwners, Tracker};
use crate::topology::{self, Link, LinkKind, NsView, NsidCache, Topology, names::Names};

/// Which interfaces to attach to.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only these namespaces (inodes); empty = all.
    pub netns: Vec<u64>,
    /// Only interfaces with these names (any kind); empty = by kind (below).
    pub interfaces: Vec<String>,
    /// Also loopback devices.
    pub lo: bool,
    /// Also devices with no rtnetlink kind (physical NICs).
    pub devices: bool,
    /// Every interface, whatever its kind.
    pub all: bool,
}

impl Selection {
    #[must_use]
    pub fn wants_ns(&self, inode: u64) -> bool {
        self.netns.is_empty() || self.netns.contains(&inode)
    }

    /// Default: veths, bridges and bridge ports; `lo`/devices/everything when asked; named
    /// interfaces (any kind) when `interfaces` is set.
    #[must_use]
    pub fn wants_link(&self, ns: &NsView, l: &Link) -> bool {
        if !self.interfaces.is_empty() {
            return self.interfaces.contains(&l.name);
        }
        if self.all {
            return true;
        }
        let is_bridge_port = l.master.is_some_and(|m| {
            ns.links
                .iter()
                .any(|b| b.ifindex == m && b.kind == LinkKind::Bridge)
        });
        match &l.kind {
            LinkKind::Veth | LinkKind::Bridge => true,
            LinkKind::Loopback => self.lo,
            LinkKind::Device => self.devices || is_bridge_port,
            LinkKind::Other(_) => is_bridge_port,
        }
    }
}

/// One change made by a reconcile, for the log.
#[derive(Debug)]
pub enum Change {
    Attached {
        netns: String,
        ifname: String,
        ifindex: u32,
    },
    Detached {
        netns: String,
        ifname: String,
        ifindex: u32,
    },
    Failed(ProbeError),
    /// Something else worth saying once (a runtime that stopped answering).
    Note(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Attached {
                netns,
                ifname,
                ifindex,
            } => {
                write!(
                    f,
                    "attached {netns}/{ifname} (ifindex {ifindex}) ingress+egress"
                )
            }
            Self::Detached {
                netns,
                ifname,
                ifindex,
            } => {
                write!(f, "detached {netns}/{ifname} (ifindex {ifindex}): gone")
            }
            Self::Failed(e) => write!(f, "warning: {e}"),
            Self::Note(m) => write!(f, "warning: {m}"),
        }
    }
}

/// The probe plus what it follows.
pub struct Follower {
    pub probe: Probe,
    pub selection: Selection,
    pub names: Names,
    pub topology: Topology,
    /// Who owns which namespace, address and socket; refreshed with every rescan.
    pub identity: Tracker,
    /// Lifecycle events of the last reconciles (when `track_lifecycle`), to be drained.
    pub lifecycle: Vec<crate::identity::lifecycle::Event>,
    pub track_lifecycle: bool,
    namer: crate::identity::lifecycle::Namer,
    owners: std::cell::RefCell<(Option<std::time::Instant>, SocketOwners)>,
    /// kube-proxy's Services and their conntrack state (None: not looked at).
    pub services: Option<std::cell::RefCell<crate::services::attrib::Services>>,
    /// DROP/REJECT rule counters of the node namespaces when services were enabled, by
    /// namespace inode (for naming the rule behind a netfilter drop).
    pub nf_counters: HashMap<
        u64,
        (
            Option<std::path::PathBuf>,
            crate::services::counters::Snapshot,
        ),
    >,
    cache: NsidCache,
    /// Attach failures already reported (each is retried every rescan, but said once).
    reported: HashSet<String>,
    reported_services: std::cell::RefCell<HashSet<String>>,
}

impl Follower {
    #[must_use]
    pub fn new(probe: Probe, selection: Selection) -> Self {
        Self {
            probe,
            selection,
            names: Names::default(),
            topology: Topology::default(),
            identity: Tracker::default(),
            lifecycle: Vec::new(),
            track_lifecycle: false,
            namer: crate::identity::lifecycle::Namer::default(),
            owners: std::cell::RefCell::default(),
            services: None,
            nf_counters: HashMap::new(),
            cache: NsidCache::default(),
            reported: HashSet::new(),
            reported_services: std::cell::RefCell::default(),
        }
    }

    /// Rescans the node and brings the attachments in line with it.
    pub fn reconcile(&mut self) -> Vec<Change> {
        let selection = &self.selection;
        let topo = topology::scan_where(&mut self.cache, |inode| selection.wants_ns(inode));
        self.names.learn(&topo);

        let mut changes = Vec::new();
        let mut wanted: HashSet<AttachKey> = HashSet::new();
        let mut todo: Vec<(&NsView, Vec<&Link>)> = Vec::new();
        for ns in &topo.namespaces {
            let links: Vec<&Link> = ns
                .links
                .iter()
                .filter(|l| self.selection.wants_link(ns, l))
                .collect();
            wanted.extend(links.iter().map(|l| (ns.netns.inode, l.ifindex)));
            todo.push((ns, links));
        }
        for r in self.probe.attach_many(&todo) {
            match r {
                Ok(key) => changes.push(Change::Attached {
                    netns: self.names.netns_name(key.0).unwrap_or("?").to_owned(),
                    ifname: self.names.ifname(key).unwrap_or("?").to_owned(),
                    ifindex: key.1,
                }),
                Err(e) => {
                    if self.reported.insert(e.to_string()) {
                        changes.push(Change::Failed(e));
                    }
                }
            }
        }
        let gone: Vec<AttachKey> = self
            .probe
            .attached()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.probe.detach(key);
            changes.push(Change::Detached {
                netns: self.names.netns_name(key.0).unwrap_or("?").to_owned(),
                ifname: self.names.ifname(key).unwrap_or("?").to_owned(),
                ifindex: key.1,
            });
        }
        changes.extend(self.identity.refresh().into_iter().map(Change::Note));
        let identity = &self.identity.identity;
        let wanted: Vec<(u64, std::path::PathBuf)> = identity
            .live()
            .iter()
            .filter(|w| w.needs_socket_owner(identity))
            .flat_map(|w| w.cgroups.iter().copied().zip(w.cgroup_dirs.iter().cloned()))
            .collect();
        for e in self.probe.watch_sockets(&wanted) {
            if self.reported.insert(e.clone()) {
                changes.push(Change::Note(e));
            }
        }
        // The first scan is the starting point, not news.
        if self.track_lifecycle && !self.topology.namespaces.is_empty() {
            let ev =
                crate::identity::lifecycle::diff(&self.topology, &topo, &self.identity.identity);
            let ready = self.namer.ready(ev, &self.identity.identity, &topo, 4);
            self.lifecycle.extend(ready);
        }
        self.topology = topo;
        changes
    }

    /// Resolves flow ends against the current identity, topology and socket owners. The
    /// owners map is read at most every 100 ms (it can hold 64k entries).
    /// Turns Service attribution on: reads the rules of the host and lab nodes now.
    pub fn enable_services(&mut self) {
        let mut s = crate::services::attrib::Services::new();
        s.refresh_rules(true);
        self.services = Some(std::cell::RefCell::new(s));
        for n in crate::services::read::nodes() {
            let path = n
                .netns
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/ns/net"));
            if let Ok(m) = std::fs::metadata(&path) {
                use std::os::unix::fs::MetadataExt as _;
                let snap = crate::services::counters::snapshot(n.netns.as_deref());
                self.nf_counters.insert(m.ino(), (n.netns, snap));
            }
        }
    }

    /// The DROP/REJECT rule in namespace `inode` that counted packets since the start.
    #[must_use]
    pub fn dropping_rule(&self, inode: u64) -> Option<String> {
        let (path, start) = self.nf_counters.get(&inode)?;
        let hit = crate::services::counters::snapshot(path.as_deref())
            .grown_since(start)
            .into_iter()
            .next()?;
        Some(format!("{} {}: {}", hit.table, hit.chain, hit.rule))
    }

    /// Annotates records with their Service, backend and NAT (when enabled), re-reading the
    /// rules every 5 s and conntrack at most every 100 ms.
    pub fn attribute_services(&self, recs: &mut [crate::flows::FlowRecord]) {
        let Some(cell) = &self.services else { return };
        let mut s = cell.borrow_mut();
        s.refresh_rules(false);
        if s.is_empty() {
            return;
        }
        s.refresh_conntrack(Some(&self.identity.identity));
        for r in recs {
            r.attribute_service(&s);
        }
        for w in s.warnings.drain(..) {
            if self.reported_services.borrow_mut().insert(w.clone()) {
                eprintln!("inspector: warning: {w}");
            }
        }
    }

    pub fn with_resolver<T>(&self, f: impl FnOnce(&Resolver<'_>) -> T) -> Result<T, ProbeError> {
        let mut cache = self.owners.borrow_mut();
        if cache
            .0
            .is_none_or(|t| t.elapsed() > std::time::Duration::from_millis(100))
        {
            cache.1 = self.probe.socket_owners()?;
            cache.0 = Some(std::time::Instant::now());
        }
        let r = Resolver::new(&self.identity.identity, &cache.1, &self.topology);
        Ok(f(&r))
    }
}
