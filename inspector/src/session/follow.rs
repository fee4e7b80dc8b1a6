//! Keeping the attachments in step with the node: every rescan attaches to interfaces that
//! appeared (new namespaces, new veths) and lets go of ones that vanished, without a restart.
use std::collections::HashSet;

use super::Session;
use crate::{
    probe::{AttachKey, ProbeError},
    topology::{self, Link, LinkKind, NsView},
};

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
    /// Something else worth saying once (a runtime that stopped answering, a recreated
    /// interface the kernel-side filter still names by its old ifindex).
    Note(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Attached {
                netns,
                ifname,
                ifindex,
            } => write!(
                f,
                "attached {netns}/{ifname} (ifindex {ifindex}) ingress+egress"
            ),
            Self::Detached {
                netns,
                ifname,
                ifindex,
            } => write!(f, "detached {netns}/{ifname} (ifindex {ifindex}): gone"),
            Self::Failed(e) => write!(f, "warning: {e}"),
            Self::Note(m) => write!(f, "warning: {m}"),
        }
    }
}

impl Change {
    /// Whether this is a warning (shown even when attach changes are not).
    #[must_use]
    pub fn is_warning(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Note(_))
    }
}

impl Session {
    /// Rescans the node and brings the attachments in line with it: new interfaces are
    /// attached, vanished ones let go; identity and socket-owner watching are refreshed and
    /// lifecycle events collected (when followed).
    pub fn reconcile(&mut self) -> Vec<Change> {
        let selection = &self.selection;
        let mut topo = topology::scan_where(&mut self.cache, |inode| selection.wants_ns(inode));
        let (before, notes) = self.identity.refresh_keeping();
        crate::identity::owners::name_namespaces(&self.identity.identity, &mut topo);
        // Records seen under the old view keep its names where something changed hands.
        if !self.topology.namespaces.is_empty() {
            let moved = crate::identity::owners::moved(
                (&before, &self.topology),
                (&self.identity.identity, &topo),
            );
            self.keep_names(&before, &moved);
        }
        drop(before);
        self.names.learn(&topo);

        let mut changes = Vec::new();
        let mut wanted: HashSet<AttachKey> = HashSet::new();
        let mut todo: Vec<(&NsView, Vec<&Link>)> = Vec::new();
        // Global hooks: the devices seen and left out are told not to count.
        let mut unwanted: Vec<AttachKey> = Vec::new();
        for ns in &topo.namespaces {
            let (links, others): (Vec<&Link>, Vec<&Link>) = ns
                .links
                .iter()
                .partition(|l| self.selection.wants_link(ns, l));
            wanted.extend(links.iter().map(|l| (ns.netns.inode, l.ifindex)));
            unwanted.extend(others.iter().map(|l| (ns.netns.inode, l.ifindex)));
            todo.push((ns, links));
        }
        if let Err(e) = self.probe.exclude(&unwanted)
            && self.reported.insert(e.to_string())
        {
            changes.push(Change::Failed(e));
        }
        let mut gone: Vec<AttachKey> = self
            .probe
            .attached()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        let mut moved = Vec::new();
        // A device that moved namespaces with our links on it (a container's eth0, made in
        // the node's namespace and moved in) keeps them, filed under where it is now: one that
        // left the namespace it was attached in, whose links are on a live device, which is
        // the one new device here with that ifindex (and, for a veth, the same peer).
        gone.retain(|&from| {
            let left = topo
                .namespaces
                .iter()
                .find(|n| n.netns.inode == from.0)
                .is_none_or(|n| n.links.iter().all(|l| l.ifindex != from.1));
            let Some(at) = left.then(|| self.probe.moved_to(from)).flatten() else {
                return true;
            };
            let peer = self
                .topology
                .namespaces
                .iter()
                .find(|n| n.netns.inode == from.0)
                .and_then(|n| n.links.iter().find(|l| l.ifindex == from.1))
                .and_then(|l| l.peer_ifindex);
            let mut to = todo.iter().flat_map(|(ns, links)| {
                links
                    .iter()
                    .filter(|l| l.ifindex == at && (peer.is_none() || l.peer_ifindex == peer))
                    .map(|_| (ns.netns.inode, at))
                    .filter(|to| !self.probe.is_attached(*to))
            });
            let (Some(to), None) = (to.next(), to.next()) else {
                return true;
            };
            self.probe.adopt_moved(from, to);
            moved.push((from, to));
            false
        });
        for (from, to) in moved {
            changes.push(self.attach_change(from, false));
            changes.push(self.attach_change(to, true));
        }
        for r in self.probe.attach_many(&todo) {
            match r {
                Ok(key) => changes.push(self.attach_change(key, true)),
                Err(e) if e.interface_gone() || e.already_ours() => {}
                Err(e) => {
                    if self.reported.insert(e.to_string()) {
                        changes.push(Change::Failed(e));
                    }
                }
            }
        }
        for key in gone {
            self.probe.detach(key);
            changes.push(self.attach_change(key, false));
        }
        changes.extend(notes.into_iter().map(Change::Note));
        let identity = &self.identity.identity;
        let owners: Vec<(u64, std::path::PathBuf)> = identity
            .live()
            .iter()
            .filter(|w| w.needs_socket_owner(identity))
            .flat_map(|w| w.cgroups.iter().copied().zip(w.cgroup_dirs.iter().cloned()))
            .collect();
        for e in self.probe.watch_sockets(&owners) {
            if self.reported.insert(e.clone()) {
                changes.push(Change::Note(e));
            }
        }
        // The first scan is the starting point, not news.
        if let Some(l) = self.lifecycle.as_mut()
            && !self.topology.namespaces.is_empty()
        {
            let ev =
                crate::identity::lifecycle::diff(&self.topology, &topo, &self.identity.identity);
            let ready = l.namer.ready(ev, &self.identity.identity, &topo, 4);
            l.events.extend(ready);
        }
        self.topology = topo;
        changes.extend(self.reselect());
        if let Some(note) = self.recreated_pin(&changes) {
            changes.push(note);
        }
        if !changes.is_empty() {
            crate::sys::heap::give_back();
        }
        changes
    }

    fn attach_change(&mut self, key: AttachKey, attached: bool) -> Change {
        let now = || {
            (
                self.names.netns_name(key.0).unwrap_or("?").to_owned(),
                self.names.ifname(key).unwrap_or("?").to_owned(),
            )
        };
        let (netns, ifname) = if attached {
            let n = now();
            self.attached_as.insert(key, n.clone());
            n
        } else {
            self.attached_as.remove(&key).unwrap_or_else(now)
        };
        if attached {
            Change::Attached {
                netns,
                ifname,
                ifindex: key.1,
            }
        } else {
            Change::Detached {
                netns,
                ifname,
                ifindex: key.1,
            }
        }
    }

    /// A warning when the one filtered interface was recreated under another ifindex: the
    /// load-time filter still names the old one, so its events would be missed.
    fn recreated_pin(&self, changes: &[Change]) -> Option<Change> {
        let (name, ifindex) = self.pinned.as_ref()?;
        changes.iter().find_map(|c| match c {
            Change::Attached {
                ifname,
                ifindex: now,
                ..
            } if ifname == name && now != ifindex => Some(Change::Note(format!(
                "{name} was recreated (ifindex {ifindex} -> {now}); restart to trace it"
            ))),
            _ => None,
        })
    }
}
