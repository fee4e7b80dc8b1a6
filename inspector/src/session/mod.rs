//! The pipeline as a library: start it (privileges, namespaces, interface pinning, load,
//! attach, follow the node, ready file), ask it (flow records, drops, paths, latency rows,
//! statistics, lifecycle events, per-packet trace), and stop it (drop it). Every front-end -
//! the CLI's `trace`, `flows`, `path`, the demo, the bench's traced runs, the agent to come -
//! is a thin layer over a [`Session`].
//!
//! It owns the `Probe` (kernel), the node's `Topology` and `Names`, the identity `Tracker`,
//! and (when on) kube-proxy's Services with their conntrack state; it annotates the
//! records of `flows` with `identity` and `services` (see `records`). It imports nothing
//! above it: `output` renders what it returns.
mod annotate;
mod error;
mod flow_table;
mod follow;
mod kept;
pub mod latency;
mod options;
pub mod path;
mod queries;
pub mod records;
pub mod replay;
pub(crate) mod start;
pub mod status;
mod ticker;
pub mod trace;
mod workloads;

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    path::PathBuf,
};

pub use error::SessionError;
pub use flow_table::FlowTable;
pub use follow::{Change, Selection};
pub use options::{Measure, Options, Sampling};
pub use records::{Drop, Flow, Path, ServiceOf, Stats};
pub use start::{check_service_name, resolve_netns};
pub use ticker::Ticker;

use crate::{
    flows::filter::Filter,
    identity::{SocketOwners, Tracker, lifecycle},
    probe::Probe,
    services::{attrib::Services, counters},
    sys::time::WallClock,
    topology::{NsidCache, Topology, names::Names},
};

/// A running pipeline. Dropping it detaches everything.
pub struct Session {
    probe: Probe,
    selection: Selection,
    names: Names,
    topology: Topology,
    /// Who owns which namespace, address and socket; refreshed with every rescan.
    identity: Tracker,
    cache: NsidCache,
    /// Socket owners as last read, with when (monotonic ns; the map can hold 64k entries:
    /// read at most every 100 ms for a resolver, see [`Session::owners_cover`]).
    owners: RefCell<(Option<u64>, SocketOwners)>,
    /// kube-proxy's Services and their conntrack state (None: not looked at).
    services: Option<RefCell<Services>>,
    /// DROP/REJECT rule counters of the node namespaces at start, by namespace inode (for
    /// naming the rule behind a netfilter drop).
    nf_counters: HashMap<u64, (Option<PathBuf>, counters::RuleCounters)>,
    /// The rule last named per namespace, with the namespace's netfilter drop count then.
    nf_rules: RefCell<HashMap<u64, (u64, Option<String>)>>,
    /// Lifecycle events of the last reconciles, when followed.
    lifecycle: Option<Lifecycle>,
    /// Names of records seen before their namespace or address changed hands.
    kept: RefCell<kept::Kept>,
    filter: Filter,
    /// The one interface whose ifindex the kernel-side filter checks, if it is exactly one.
    pinned: Option<(String, u32)>,
    clock: WallClock,
    /// Each attached interface's (namespace, interface) names when it was attached: its
    /// detach is told by them (by then its namespace's inode may be another's).
    attached_as: std::collections::HashMap<crate::probe::AttachKey, (String, String)>,
    /// Failures and notes already reported (each said once).
    reported: HashSet<String>,
    reported_services: RefCell<HashSet<String>>,
    /// Warnings found while answering (a node's rules unreadable), for the front-end.
    notes: RefCell<Vec<String>>,
    /// Per-hop latency (kernel histograms, or events aggregated here), when measured.
    latency: Option<latency::Latency>,
    /// The kernel's link and address announcements (None: could not subscribe).
    watch: Option<crate::topology::watch::LinkWatch>,
    /// Workload selectors, resolved at each rescan (None: none given).
    workloads: Option<workloads::Workloads>,
}

struct Lifecycle {
    namer: lifecycle::Namer,
    events: Vec<lifecycle::Event>,
}

impl Session {
    /// Names of namespaces and interfaces seen so far.
    #[must_use]
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The node as the last rescan saw it.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The workloads known now.
    #[must_use]
    pub fn identity(&self) -> &crate::identity::Identity {
        &self.identity.identity
    }

    /// The packet filter in force.
    #[must_use]
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Which namespaces and interfaces are followed.
    #[must_use]
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// How many interfaces the programs are attached to.
    #[must_use]
    pub fn attached(&self) -> usize {
        self.probe.attached().count()
    }

    /// The conversion of kernel stamps to Unix time used for every record.
    #[must_use]
    pub fn wall_clock(&self) -> WallClock {
        self.clock
    }

    /// Lifecycle events since the last call (when followed: `Options::lifecycle`).
    pub fn take_lifecycle(&mut self) -> Vec<lifecycle::Event> {
        self.lifecycle
            .as_mut()
            .map(|l| std::mem::take(&mut l.events))
            .unwrap_or_default()
    }

    /// Whether the kernel announced a link or address change, or a runtime a container's
    /// start or end, since the last call: a front-end then rescans soon
    /// ([`Ticker::rescan_soon`]) rather than at its next period.
    #[must_use]
    pub fn announced(&self) -> bool {
        let link = self
            .watch
            .as_ref()
            .is_some_and(crate::topology::watch::LinkWatch::changed);
        // Both are drained every time (neither may stay readable and spin the wait).
        self.identity.announced() | link | self.selection_waits()
    }

    /// Warnings found while answering queries since the last call (each said once).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut self.notes.borrow_mut())
    }

    /// Folds the kernel's latest clock samples in (call it often; it is one map lookup).
    pub fn sync_clock(&self) {
        let _ = self.probe.clock();
    }

    /// Runs `f` with a resolver over the current identity, topology and socket owners (the
    /// owners map is read at most every 100 ms).
    pub fn with_resolver<T>(
        &self,
        f: impl FnOnce(&crate::identity::Resolver<'_>) -> T,
    ) -> Result<T, SessionError> {
        self.with_resolver_of(&self.identity.identity, &self.topology, f)
    }

    /// [`Self::with_resolver`] over a given identity and topology.
    fn with_resolver_of<T>(
        &self,
        identity: &crate::identity::Identity,
        topology: &Topology,
        f: impl FnOnce(&crate::identity::Resolver<'_>) -> T,
    ) -> Result<T, SessionError> {
        let now = crate::sys::time::mono_now_ns();
        if self.owners.borrow().0.is_none_or(|t| now > t + 100_000_000) {
            self.read_owners(now)?;
        }
        let cache = self.owners.borrow();
        let r = crate::identity::Resolver::new(identity, &cache.1, topology);
        Ok(f(&r))
    }

    fn read_owners(&self, now: u64) -> Result<(), SessionError> {
        let owners = self.probe.socket_owners()?;
        *self.owners.borrow_mut() = (Some(now), owners);
        Ok(())
    }

    /// Whether the socket owners as read cover a packet seen at `ts_ns` (monotonic): true
    /// when no flow end is told by its socket owner, or they were read after it, or they
    /// are read now (at most every 5 ms: a packet seen since waits for the next read).
    /// Otherwise a trace would name a new connection's first packets in a shared
    /// namespace "shared by ..." although the kernel had recorded its socket's owner.
    pub fn owners_cover(&self, ts_ns: u64) -> bool {
        if !self.probe.watching_sockets() {
            return true;
        }
        let read = self.owners.borrow().0;
        if read.is_some_and(|t| t >= ts_ns) {
            return true;
        }
        let now = crate::sys::time::mono_now_ns();
        if read.is_some_and(|t| now < t + 5_000_000) {
            return false;
        }
        // A map that cannot be read names by namespace, as before.
        let _ = self.read_owners(now);
        true
    }
}
