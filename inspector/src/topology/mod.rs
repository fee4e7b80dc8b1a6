//! The node's network topology: namespaces, their links and addresses, and which veth end
//! pairs with which across namespaces. Read fresh on every scan (see `netns` for why nothing
//! is held open in between).
pub mod links;
pub mod names;
pub mod netns;
pub mod view;
pub mod watch;

use std::collections::HashMap;

pub use links::{Addr, Link, LinkKind, LinkStats, Route};
pub use netns::{Netns, NetnsKind};

/// One namespace with what it contains.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NsView {
    #[serde(flatten)]
    pub netns: Netns,
    pub links: Vec<Link>,
}

/// (namespace inode, ifindex): a link's identity on the node.
pub type LinkId = (u64, u32);

/// Everything one scan saw.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub namespaces: Vec<NsView>,
    /// veth end -> its peer, in both directions, where the peer is visible.
    pub peers: HashMap<LinkId, LinkId>,
}

impl Topology {
    #[must_use]
    pub fn ns(&self, inode: u64) -> Option<&NsView> {
        self.namespaces.iter().find(|n| n.netns.inode == inode)
    }

    #[must_use]
    pub fn link(&self, id: LinkId) -> Option<(&NsView, &Link)> {
        let ns = self.ns(id.0)?;
        Some((ns, ns.links.iter().find(|l| l.ifindex == id.1)?))
    }
}

/// A namespace with one veth `eth0` holding `addrs` (/24): for tests of what reads a
/// topology.
#[cfg(test)]
#[must_use]
pub fn test_ns(inode: u64, name: &str, kind: NetnsKind, addrs: &[&str]) -> NsView {
    NsView {
        netns: Netns {
            inode,
            dev: 0,
            path: "/".into(),
            name: name.into(),
            kind,
        },
        links: vec![Link {
            ifindex: 2,
            name: "eth0".into(),
            kind: LinkKind::Veth,
            master: None,
            peer_ifindex: None,
            peer_netnsid: None,
            up: true,
            oper_state: "up".into(),
            mtu: 1500,
            mac: None,
            addrs: addrs
                .iter()
                .map(|a| Addr {
                    addr: a.parse().unwrap(),
                    prefix: 24,
                })
                .collect(),
            stats: LinkStats::default(),
        }],
    }
}

/// Remembers which nsid one namespace uses for another (stable while both live).
#[derive(Default)]
pub struct NsidCache(HashMap<(u64, u64), Option<i32>>);

/// Reads one namespace's links. Errors if it vanished meanwhile.
pub fn scan_ns(ns: &Netns) -> std::io::Result<NsView> {
    let (links, inode) = crate::sys::netns::run_in(&ns.path, || -> std::io::Result<_> {
        Ok((links::list()?, crate::sys::netns::current_inode()?))
    })??;
    if inode != ns.inode {
        // /proc/PID/ns/net now belongs to another process (pid reuse) or moved.
        return Err(std::io::Error::other("namespace changed while scanning"));
    }
    Ok(NsView {
        netns: ns.clone(),
        links,
    })
}

/// Scans every namespace on the node. Namespaces that vanish mid-scan are skipped.
#[must_use]
pub fn scan(cache: &mut NsidCache) -> Topology {
    scan_where(cache, |_| true)
}

/// Scans the namespaces (by inode) that `wanted` accepts.
#[must_use]
pub fn scan_where(cache: &mut NsidCache, wanted: impl Fn(u64) -> bool) -> Topology {
    let namespaces: Vec<NsView> = netns::discover()
        .iter()
        .filter(|ns| wanted(ns.inode))
        .filter_map(|ns| scan_ns(ns).ok())
        .collect();
    let peers = resolve_peers(&namespaces, cache);
    Topology { namespaces, peers }
}

/// Pairs veth ends. A veth reports its peer's ifindex and, if the peer is elsewhere, the nsid
/// under which *its* namespace knows the peer's namespace. We first match on the mutual
/// ifindex pointers; only when that is ambiguous do we ask the kernel for nsids.
#[must_use]
pub fn resolve_peers(views: &[NsView], cache: &mut NsidCache) -> HashMap<LinkId, LinkId> {
    let live: std::collections::HashSet<u64> = views.iter().map(|v| v.netns.inode).collect();
    cache
        .0
        .retain(|(a, b), _| live.contains(a) && live.contains(b));
    let mut peers = HashMap::new();
    for a in views {
        for l in a.links.iter().filter(|l| l.kind == LinkKind::Veth) {
            let Some(pidx) = l.peer_ifindex else { continue };
            let me = (a.netns.inode, l.ifindex);
            let Some(nsid) = l.peer_netnsid else {
                peers.insert(me, (a.netns.inode, pidx));
                continue;
            };
            let candidates: Vec<&NsView> = views
                .iter()
                .filter(|b| b.netns.inode != a.netns.inode)
                .filter(|b| {
                    b.links.iter().any(|p| {
                        p.ifindex == pidx
                            && p.kind == LinkKind::Veth
                            && p.peer_ifindex == Some(l.ifindex)
                    })
                })
                .collect();
            let chosen = if candidates.len() == 1 {
                Some(candidates[0])
            } else {
                candidates.into_iter().find(|b| {
                    let key = (a.netns.inode, b.netns.inode);
                    let id = *cache.0.entry(key).or_insert_with(|| {
                        crate::sys::netns::run_in(&a.netns.path, || links::nsid_of(&b.netns.path))
                            .ok()
                            .and_then(Result::ok)
                            .flatten()
                    });
                    id == Some(nsid)
                })
            };
            if let Some(b) = chosen {
                peers.insert(me, (b.netns.inode, pidx));
            }
        }
    }
    peers
}
