//! Names for what the kernel programs report by number: namespace inode -> name,
//! (namespace, ifindex) -> interface name and veth peer. Updated from every scan and never
//! forgotten during a run, so flows through a namespace that has since vanished keep names.
use std::collections::HashMap;

use super::{LinkId, Topology};

#[derive(Clone, Debug, Default)]
pub struct Names {
    ifnames: HashMap<LinkId, String>,
    peers: HashMap<LinkId, LinkId>,
    namespaces: HashMap<u64, String>,
}

impl Names {
    /// Adds what `topo` knows (keeps what it already had).
    pub fn learn(&mut self, topo: &Topology) {
        for ns in &topo.namespaces {
            self.namespaces
                .insert(ns.netns.inode, ns.netns.name.clone());
            for l in &ns.links {
                self.ifnames
                    .insert((ns.netns.inode, l.ifindex), l.name.clone());
            }
        }
        self.peers.extend(topo.peers.iter().map(|(a, b)| (*a, *b)));
    }

    #[must_use]
    pub fn netns_name(&self, inode: u64) -> Option<&str> {
        self.namespaces.get(&inode).map(String::as_str)
    }

    #[must_use]
    pub fn ifname(&self, id: LinkId) -> Option<&str> {
        self.ifnames.get(&id).map(String::as_str)
    }

    #[must_use]
    pub fn peer(&self, id: LinkId) -> Option<LinkId> {
        self.peers.get(&id).copied()
    }
}
