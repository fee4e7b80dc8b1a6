//! The `netns` record of `inspector topology`: one namespace with its links, each with its
//! bridge (by name) and its veth peer followed across namespaces.
use serde::Serialize;

use super::{Link, NetnsKind, Topology};

/// The other end of a veth.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRef {
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
}

/// One link of a namespace as the map shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LinkView {
    #[serde(flatten)]
    pub link: Link,
    pub master_name: Option<String>,
    pub peer: Option<PeerRef>,
}

/// One namespace and its links (`type: "netns"`).
#[derive(Clone, Debug, Serialize)]
pub struct NetnsView {
    pub netns: u64,
    pub name: String,
    pub netns_kind: NetnsKind,
    pub path: String,
    pub links: Vec<LinkView>,
}

fn peer_of(topo: &Topology, inode: u64, l: &Link) -> Option<PeerRef> {
    let (pns, pidx) = topo.peers.get(&(inode, l.ifindex)).copied()?;
    let (ns, link) = topo.link((pns, pidx))?;
    Some(PeerRef {
        netns: pns,
        netns_name: ns.netns.name.clone(),
        ifindex: pidx,
        ifname: link.name.clone(),
    })
}

/// The namespaces of `topo` whose inode `want` contains (all when empty).
#[must_use]
pub fn namespaces(topo: &Topology, want: &[u64]) -> Vec<NetnsView> {
    topo.namespaces
        .iter()
        .filter(|n| want.is_empty() || want.contains(&n.netns.inode))
        .map(|ns| NetnsView {
            netns: ns.netns.inode,
            name: ns.netns.name.clone(),
            netns_kind: ns.netns.kind.clone(),
            path: ns.netns.path.display().to_string(),
            links: ns
                .links
                .iter()
                .map(|l| LinkView {
                    link: l.clone(),
                    master_name: l
                        .master
                        .and_then(|m| ns.links.iter().find(|x| x.ifindex == m))
                        .map(|b| b.name.clone()),
                    peer: peer_of(topo, ns.netns.inode, l),
                })
                .collect(),
        })
        .collect()
}
