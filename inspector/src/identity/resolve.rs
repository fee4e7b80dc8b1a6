//! Which workload is one end of a flow.
//!
//! 1. The end's namespace: loopback addresses live in the namespace the packet was seen in;
//!    other addresses in the namespace that has them on a link (the one the packet was seen
//!    in wins a tie; a tie elsewhere is no answer).
//! 2. The socket's owner, when the kernel recorded it (`insp_sock_owner`, a `cgroup_skb`
//!    program): (namespace, protocol, address, port) -> cgroup -> the workload of that cgroup.
//!    This is what splits a namespace shared by several containers, and what finds host-mode
//!    containers among the host's own processes.
//! 3. Otherwise the namespace's only workload; several are "shared by A, B"; host-like
//!    namespaces (the host, or one with a host-mode workload) give no answer, because any
//!    process there could own the socket.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use serde::Serialize;

use super::{Identity, Workload};
pub use crate::probe::SocketOwners;
use crate::topology::Topology;

/// One end of a flow as users read it. Fields are `null` when unknown, never guessed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    pub name: Option<String>,
    pub id: Option<String>,
    /// container, pod, lab - or "shared" when the namespace's workloads could not be told
    /// apart.
    pub kind: Option<String>,
    pub runtime: Option<String>,
    pub network_mode: Option<String>,
    /// For "shared": the workloads of the namespace, "name (id)".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_by: Vec<String>,
}

impl Endpoint {
    pub(crate) fn of(w: &Workload) -> Self {
        Self {
            name: Some(w.name.clone()),
            id: Some(w.id.clone()),
            kind: w.kind.map(|k| k.as_str().to_owned()),
            runtime: Some(w.runtime.clone()),
            network_mode: w.network_mode.clone(),
            shared_by: Vec::new(),
        }
    }

    pub(crate) fn shared(ws: &[&Workload]) -> Self {
        let mut names: Vec<&str> = ws.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        let runtimes: HashSet<&str> = ws.iter().map(|w| w.runtime.as_str()).collect();
        Self {
            name: Some(format!("shared by {}", names.join(", "))),
            id: None,
            kind: Some("shared".into()),
            runtime: (runtimes.len() == 1).then(|| ws[0].runtime.clone()),
            network_mode: None,
            shared_by: ws
                .iter()
                .map(|w| format!("{} ({})", w.name, w.short_id()))
                .collect(),
        }
    }
}

/// Resolves flow ends against one identity snapshot and one topology.
pub struct Resolver<'a> {
    identity: &'a Identity,
    owners: &'a SocketOwners,
    /// address -> namespaces that hold it on a link.
    holders: HashMap<IpAddr, Vec<u64>>,
    /// Namespaces where any process may own a socket (the host; host-mode workloads' ones).
    host_like: HashSet<u64>,
}

impl<'a> Resolver<'a> {
    #[must_use]
    pub fn new(identity: &'a Identity, owners: &'a SocketOwners, topo: &Topology) -> Self {
        let mut holders: HashMap<IpAddr, Vec<u64>> = HashMap::new();
        for ns in &topo.namespaces {
            for l in &ns.links {
                for a in &l.addrs {
                    let v = holders.entry(a.addr).or_default();
                    if !v.contains(&ns.netns.inode) {
                        v.push(ns.netns.inode);
                    }
                }
            }
        }
        let mut host_like: HashSet<u64> = topo
            .namespaces
            .iter()
            .filter(|n| n.netns.kind == crate::topology::NetnsKind::Host)
            .map(|n| n.netns.inode)
            .collect();
        host_like.extend(
            identity
                .live()
                .iter()
                .filter(|w| w.is_host_mode())
                .filter_map(|w| w.netns),
        );
        Self {
            identity,
            owners,
            holders,
            host_like,
        }
    }

    /// The namespace an address belongs to, as seen from a packet in namespace `seen_in`.
    #[must_use]
    pub fn netns_of(&self, ip: IpAddr, seen_in: u64) -> Option<u64> {
        if ip.is_loopback() {
            return Some(seen_in);
        }
        match self.holders.get(&ip).map(Vec::as_slice) {
            Some([one]) => Some(*one),
            Some(many) if many.contains(&seen_in) => Some(seen_in),
            Some(_) => None,
            None => {
                // Not on any link we scanned (a namespace we cannot enter): the runtime's word.
                let mut ns = self.identity.with_ip(ip).filter_map(|w| w.netns);
                let first = ns.next()?;
                ns.all(|n| n == first).then_some(first)
            }
        }
    }

    /// Who is the end `ip`(:`port`) of a flow of IP protocol `proto` seen in `seen_in`.
    #[must_use]
    pub fn endpoint(
        &self,
        ip: IpAddr,
        port: Option<u16>,
        proto: u8,
        seen_in: u64,
    ) -> Option<Endpoint> {
        let ns = self.netns_of(ip, seen_in)?;
        let owner = port
            .and_then(|p| self.owners.lookup(u32::try_from(ns).ok()?, proto, ip, p))
            .and_then(|cg| self.identity.by_cgroup(cg))
            .filter(|w| w.netns == Some(ns));
        if let Some(w) = owner {
            return Some(Endpoint::of(w));
        }
        if self.host_like.contains(&ns) {
            return None;
        }
        let ws: Vec<&Workload> = self.identity.in_netns(ns).collect();
        match ws.as_slice() {
            [] => None,
            [one] => Some(Endpoint::of(one)),
            many => Some(Endpoint::shared(many)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Kind;
    use crate::topology::{NetnsKind, NsView};

    fn w(name: &str, mode: &str, netns: u64, ips: &[&str], cgroups: &[u64]) -> Workload {
        Workload {
            name: name.into(),
            id: format!("{name}0123456789abcdef"),
            kind: Some(Kind::Container),
            runtime: "docker".into(),
            network_mode: Some(mode.into()),
            netns: Some(netns),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            cgroups: cgroups.to_vec(),
            ..Workload::default()
        }
    }

    fn ns(inode: u64, addrs: &[&str]) -> NsView {
        let kind = if inode == 1 {
            NetnsKind::Host
        } else {
            NetnsKind::Process
        };
        crate::topology::test_ns(inode, &format!("ns{inode}"), kind, addrs)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bridge_shared_host_and_unknown() {
        let id = Identity::new(vec![
            w("web", "bridge", 10, &["198.19.0.2"], &[100]),
            w("side", "container:web", 10, &[], &[101]),
            w("pub", "bridge", 11, &["198.19.0.3"], &[102]),
            w("hostc", "host", 1, &[], &[103]),
        ]);
        let topo = Topology {
            namespaces: vec![
                ns(1, &["198.19.0.1"]),
                ns(10, &["198.19.0.2"]),
                ns(11, &["198.19.0.3"]),
            ],
            ..Topology::default()
        };
        let mut owners = SocketOwners::default();
        owners.insert(10, 6, ip("::"), 80, 101);
        owners.insert(10, 6, ip("::ffff:198.19.0.2"), 82, 100);
        owners.0.insert((1, 6, ip("198.19.0.1"), 40000), 103);
        let r = Resolver::new(&id, &owners, &topo);

        let pubc = r.endpoint(ip("198.19.0.3"), Some(5555), 6, 1).expect("pub");
        assert_eq!(pubc.name.as_deref(), Some("pub"));
        assert_eq!(pubc.network_mode.as_deref(), Some("bridge"));

        // Shared namespace: the socket owner decides; without one, both are named.
        let side = r.endpoint(ip("198.19.0.2"), Some(80), 6, 11).expect("side");
        assert_eq!(side.name.as_deref(), Some("side"));
        let web = r
            .endpoint(ip("198.19.0.2"), Some(82), 6, 11)
            .expect("v4-mapped");
        assert_eq!(web.name.as_deref(), Some("web"));
        let shared = r
            .endpoint(ip("198.19.0.2"), Some(81), 6, 11)
            .expect("shared");
        assert_eq!(shared.name.as_deref(), Some("shared by side, web"));
        assert_eq!(shared.kind.as_deref(), Some("shared"));
        assert_eq!(shared.id, None);
        assert_eq!(shared.shared_by.len(), 2);

        // Host namespace: only the socket owner counts.
        let host = r
            .endpoint(ip("198.19.0.1"), Some(40000), 6, 10)
            .expect("host-mode");
        assert_eq!(host.name.as_deref(), Some("hostc"));
        assert_eq!(r.endpoint(ip("198.19.0.1"), Some(40001), 6, 10), None);
        assert_eq!(r.endpoint(ip("198.19.0.1"), None, 1, 10), None);

        // Loopback is the namespace the packet was seen in.
        let lo = r.endpoint(ip("127.0.0.1"), Some(80), 6, 10).expect("lo");
        assert_eq!(lo.name.as_deref(), Some("side"));
        // Nobody has it: no answer.
        assert_eq!(r.endpoint(ip("198.18.9.9"), Some(1), 6, 10), None);
    }

    #[test]
    fn departed_workloads_yield_reused_namespaces_and_addresses() {
        // `old` left; the kernel gave its namespace inode and Docker its address to `new`.
        let id = Identity::with_departed(
            vec![w("new", "bridge", 10, &["198.19.0.4"], &[200])],
            vec![
                (5, w("old", "bridge", 10, &["198.19.0.4"], &[100])),
                (3, w("older", "bridge", 12, &["198.19.0.9"], &[90])),
                (5, w("old-side", "container:old", 13, &[], &[101])),
                (5, w("old-web", "bridge", 13, &["198.19.0.7"], &[102])),
            ],
        );
        assert_eq!(id.live().len(), 1);
        let names = |ns| id.in_netns(ns).map(|w| w.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(10), ["new"]);
        assert_eq!(
            names(12),
            ["older"],
            "a departed workload keeps what nobody took"
        );
        assert_eq!(id.with_ip("198.19.0.4".parse().unwrap()).count(), 1);
        assert_eq!(id.by_cgroup(100).map(|w| w.name.as_str()), Some("old"));
    }

    #[test]
    fn owner_in_another_namespace_is_not_believed() {
        let id = Identity::new(vec![
            w("a", "bridge", 10, &["198.19.0.2"], &[100]),
            w("b", "bridge", 11, &["198.19.0.3"], &[101]),
        ]);
        let topo = Topology {
            namespaces: vec![ns(10, &["198.19.0.2"]), ns(11, &["198.19.0.3"])],
            ..Topology::default()
        };
        let mut owners = SocketOwners::default();
        owners.0.insert((10, 6, ip("198.19.0.2"), 80), 101);
        let r = Resolver::new(&id, &owners, &topo);
        let e = r.endpoint(ip("198.19.0.2"), Some(80), 6, 10).expect("a");
        assert_eq!(e.name.as_deref(), Some("a"));
    }
}
