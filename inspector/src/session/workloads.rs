//! Workload selection during a session: the selectors resolved again after every rescan
//! (identity and namespaces), written to the kernel's event filter, and asked by the
//! session's queries and the tracer for each flow, drop and packet.
//!
//! A namespace that appeared since start and has no owner yet (a pod's sandbox whose
//! runtime has not answered with it) is left unplaced for `YOUNG`: the kernel passes its
//! packets, the tracer holds them, and the session asks for rescans until its owner is
//! known. So a pod created after the trace began is traced from its first packet.
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use inspector_common::FlowKey;

use super::{Change, Session};
use crate::identity::select::{Resolved, Selectors};

/// How long a new namespace without an owner is waited for.
pub(crate) const YOUNG: Duration = Duration::from_secs(15);
/// Rescans while one is waited for come at most this often.
const RESCAN_GAP: Duration = Duration::from_millis(250);

pub(crate) struct Workloads {
    selectors: Selectors,
    now: Resolved,
    /// When each namespace was first seen (those of the first scan: long before).
    first_seen: HashMap<u64, Instant>,
    /// Namespaces waited for (young, no owner yet), as of the last rescan.
    waiting: bool,
    last: Option<Instant>,
    started: bool,
    /// Host-mode workloads already reported.
    said: HashSet<String>,
}

impl Workloads {
    pub(crate) fn new(selectors: Selectors) -> Self {
        Self {
            selectors,
            now: Resolved::default(),
            first_seen: HashMap::new(),
            waiting: false,
            last: None,
            started: false,
            said: HashSet::new(),
        }
    }
}

/// The addresses of every link in the namespaces of `known`.
fn addrs_in<'a>(
    topo: &'a crate::topology::Topology,
    known: &'a HashSet<u64>,
) -> impl Iterator<Item = std::net::IpAddr> + 'a {
    topo.namespaces
        .iter()
        .filter(|n| known.contains(&n.netns.inode))
        .flat_map(|n| n.links.iter().flat_map(|l| l.addrs.iter().map(|a| a.addr)))
}

impl Session {
    /// Resolves the selectors again (after a rescan) and writes the kernel's part.
    pub(super) fn reselect(&mut self) -> Vec<Change> {
        let Some(w) = self.workloads.as_mut() else {
            return Vec::new();
        };
        let now = Instant::now();
        let long_ago = now.checked_sub(YOUNG * 2).unwrap_or(now);
        let first = !w.started;
        w.started = true;
        let identity = &self.identity.identity;
        let mut known = HashSet::new();
        let mut waiting = false;
        for ns in &self.topology.namespaces {
            let inode = ns.netns.inode;
            let seen = *w
                .first_seen
                .entry(inode)
                .or_insert(if first { long_ago } else { now });
            let owned = identity.in_netns(inode).next().is_some();
            let pending = self.identity.pending(inode);
            if (owned && !pending) || now.duration_since(seen) >= YOUNG {
                known.insert(inode);
            } else {
                waiting = true;
            }
        }
        w.first_seen.retain(|ns, _| {
            self.topology
                .namespaces
                .iter()
                .any(|n| n.netns.inode == *ns)
        });
        w.waiting = waiting;
        w.last = Some(now);
        w.now = w
            .selectors
            .resolve(identity, &known, addrs_in(&self.topology, &known), waiting);
        let mut changes = Vec::new();
        if first && w.now.names.is_empty() {
            changes.push(Change::Note(
                "no workload matches the selectors yet: following the node until one does".into(),
            ));
        }
        for name in &w.now.host_mode {
            if w.said.insert(name.clone()) {
                changes.push(Change::Note(format!(
                    "{name} is in host mode: its traffic is the node's, and it has no \
                     namespace or address to select it by"
                )));
            }
        }
        if let Err(e) = self
            .probe
            .select_workloads(&w.now.netns, &w.now.addrs, w.now.waiting)
            && self.reported.insert(e.to_string())
        {
            changes.push(Change::Failed(e));
        }
        changes
    }

    /// Whether a flow, drop or packet of `key` is selected: `Some(true)` with no selectors;
    /// `None` while its namespace waits for an owner.
    #[must_use]
    pub fn selected(&self, key: &FlowKey) -> Option<bool> {
        match &self.workloads {
            None => Some(true),
            Some(w) => w.now.verdict(key),
        }
    }

    /// `sel` resolved against the node as the last rescan saw it (every namespace placed):
    /// for selections asked of records already read (the agent's per-query selectors).
    #[must_use]
    pub fn resolve_selectors(&self, sel: &Selectors) -> Resolved {
        let known: HashSet<u64> = self
            .topology
            .namespaces
            .iter()
            .map(|n| n.netns.inode)
            .collect();
        sel.resolve(
            &self.identity.identity,
            &known,
            addrs_in(&self.topology, &known),
            false,
        )
    }

    /// The workloads the selectors name now (empty without selectors).
    #[must_use]
    pub fn selected_workloads(&self) -> &[String] {
        self.workloads.as_ref().map_or(&[], |w| &w.now.names)
    }

    /// Before the end's output: when a new namespace still waited for its owner at the last
    /// rescan, one more rescan decides what was held for it (else it would be dropped).
    pub fn settle(&mut self) -> Vec<Change> {
        if self.workloads.as_ref().is_some_and(|w| w.waiting) {
            self.reconcile()
        } else {
            Vec::new()
        }
    }

    /// Whether a new namespace waits for its owner (the front-end then rescans soon).
    pub(super) fn selection_waits(&self) -> bool {
        self.workloads
            .as_ref()
            .is_some_and(|w| w.waiting && w.last.is_none_or(|t| t.elapsed() >= RESCAN_GAP))
    }
}
