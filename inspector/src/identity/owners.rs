//! Namespaces named after their owners, and what changed hands between two views of the node.
//!
//! A namespace found through a process (`pid:9350(httpd)`), a Docker sandbox
//! (`docker:1f0c...`) or CNI's generated `cni-<uuid>` is called by the workload that owns it
//! once the runtime names one: the container's name, a pod's `ns/name`. A name someone chose
//! (`ip netns add NAME`, a lab's namespaces) and `host` stay.
//!
//! [`moved`] says which namespaces and addresses changed hands between two rescans (their
//! name, holders or workloads changed, or they are gone): records seen before that moment
//! are named with the view they were seen under (the session keeps those names).
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use super::Identity;
use crate::topology::{Netns, NetnsKind, Topology};

/// Whether a namespace's name was made up by its discovery (a process, a Docker sandbox id,
/// CNI's `cni-<uuid>`), not chosen by someone: such a name gives way to its owner's.
#[must_use]
pub fn generated_name(ns: &Netns) -> bool {
    match ns.kind {
        NetnsKind::Process | NetnsKind::Docker => true,
        NetnsKind::Named => ns.name.starts_with("cni-"),
        NetnsKind::Host => false,
    }
}

/// The name of the workload(s) owning namespace `inode`: the one that is not a
/// `container:` child (Docker's container mode), else the children; several are joined with
/// `+`, sorted. None when no live workload is there.
#[must_use]
pub fn owner_name<S: std::hash::BuildHasher>(
    identity: &Identity,
    live: &HashSet<&str, S>,
    inode: u64,
) -> Option<String> {
    let here: Vec<&super::Workload> = identity
        .in_netns(inode)
        .filter(|w| live.contains(w.id.as_str()) && !w.is_host_mode())
        .collect();
    let parents: BTreeSet<&str> = here
        .iter()
        .filter(|w| {
            !w.network_mode
                .as_deref()
                .is_some_and(|m| m.starts_with("container:"))
        })
        .map(|w| w.name.as_str())
        .collect();
    let names = if parents.is_empty() {
        here.iter().map(|w| w.name.as_str()).collect()
    } else {
        parents
    };
    (!names.is_empty()).then(|| names.into_iter().collect::<Vec<_>>().join("+"))
}

/// Renames the namespaces of `topo` whose names were generated after their owners.
pub fn name_namespaces(identity: &Identity, topo: &mut Topology) {
    let live: HashSet<&str> = identity.live().iter().map(|w| w.id.as_str()).collect();
    for ns in &mut topo.namespaces {
        if generated_name(&ns.netns)
            && let Some(name) = owner_name(identity, &live, ns.netns.inode)
        {
            ns.netns.name = name;
        }
    }
}

/// Namespaces and addresses that changed hands between two views.
#[derive(Debug, Default)]
pub struct Moved {
    pub netns: HashSet<u64>,
    pub addrs: HashSet<IpAddr>,
}

impl Moved {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.netns.is_empty() && self.addrs.is_empty()
    }

    /// Whether a record seen in `netns` between `src` and `dst` may be named otherwise now.
    #[must_use]
    pub fn touches(&self, netns: u64, src: Option<IpAddr>, dst: Option<IpAddr>) -> bool {
        self.netns.contains(&netns)
            || [src, dst]
                .into_iter()
                .flatten()
                .any(|a| self.addrs.contains(&a))
    }
}

/// Per namespace: its name (None when generated, so naming it after its owner is no move)
/// and live workloads; per address: the namespaces holding it on a link and the live
/// workloads reporting it.
type Signatures = (
    HashMap<u64, (Option<String>, BTreeSet<String>)>,
    HashMap<IpAddr, (BTreeSet<u64>, BTreeSet<String>)>,
);

fn signatures(identity: &Identity, topo: &Topology) -> Signatures {
    let mut ns = HashMap::new();
    let mut addrs: HashMap<IpAddr, (BTreeSet<u64>, BTreeSet<String>)> = HashMap::new();
    for v in &topo.namespaces {
        let inode = v.netns.inode;
        let name = (!generated_name(&v.netns)).then(|| v.netns.name.clone());
        ns.insert(inode, (name, BTreeSet::new()));
        for l in &v.links {
            for a in &l.addrs {
                addrs.entry(a.addr).or_default().0.insert(inode);
            }
        }
    }
    for w in identity.live() {
        if let Some(inode) = w.netns
            && let Some(sig) = ns.get_mut(&inode)
        {
            sig.1.insert(w.id.clone());
        }
        for ip in &w.ips {
            addrs.entry(*ip).or_default().1.insert(w.id.clone());
        }
    }
    (ns, addrs)
}

/// What changed hands from `before` to `after`: a namespace that is gone, renamed, or
/// whose workloads changed; an address whose holders or workloads changed, or that is held
/// in a namespace that moved. What was unowned and is owned now did not move: it is the
/// runtime catching up with a new workload, whose records get its name.
#[must_use]
pub fn moved(before: (&Identity, &Topology), after: (&Identity, &Topology)) -> Moved {
    let (ns0, addrs0) = signatures(before.0, before.1);
    let (ns1, addrs1) = signatures(after.0, after.1);
    let mut m = Moved::default();
    for (inode, (name, ws)) in &ns0 {
        let same = ns1
            .get(inode)
            .is_some_and(|(n, w)| n == name && (ws.is_empty() || w == ws));
        if !same {
            m.netns.insert(*inode);
        }
    }
    for (a, (holders, ws)) in &addrs0 {
        let same = addrs1.get(a).is_some_and(|(h, w)| {
            (holders.is_empty() || h == holders) && (ws.is_empty() || w == ws)
        });
        if !same || holders.iter().any(|n| m.netns.contains(n)) {
            m.addrs.insert(*a);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Kind, Workload};

    use crate::topology::test_ns as ns;

    fn container(name: &str, inode: u64, mode: &str, ip: &[&str]) -> Workload {
        Workload {
            name: name.into(),
            id: format!("{name}-id"),
            kind: Some(Kind::Container),
            runtime: "docker".into(),
            network_mode: Some(mode.into()),
            netns: Some(inode),
            ips: ip.iter().map(|a| a.parse().unwrap()).collect(),
            ..Workload::default()
        }
    }

    #[test]
    fn generated_names_give_way_to_the_owner_chosen_ones_stay() {
        let web = container("web", 10, "bridge", &["198.18.5.2"]);
        let side = container("sidecar", 10, "container:web-id", &[]);
        let lab = Workload {
            kind: Some(Kind::Lab),
            ..container("client", 12, "lab", &["198.18.5.3"])
        };
        let pod = Workload {
            kind: Some(Kind::Pod),
            ..container("demo/web-0", 13, "pod", &["198.18.5.4"])
        };
        let identity = Identity::new(vec![web, side, lab, pod]);
        let mut topo = Topology {
            namespaces: vec![
                ns(1, "host", NetnsKind::Host, &[]),
                ns(10, "pid:9350(httpd)", NetnsKind::Process, &["198.18.5.2"]),
                ns(11, "pid:77(sleep)", NetnsKind::Process, &[]),
                ns(12, "insp-lab-client", NetnsKind::Named, &["198.18.5.3"]),
                ns(13, "cni-1234", NetnsKind::Named, &["198.18.5.4"]),
            ],
            peers: HashMap::new(),
        };
        name_namespaces(&identity, &mut topo);
        let names: Vec<&str> = topo
            .namespaces
            .iter()
            .map(|n| n.netns.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "host",
                "web",
                "pid:77(sleep)",
                "insp-lab-client",
                "demo/web-0"
            ]
        );
        // The parent gone, the child that stayed names the namespace.
        let identity = Identity::new(vec![container("sidecar", 10, "container:web-id", &[])]);
        let live: HashSet<&str> = ["sidecar-id"].into();
        assert_eq!(owner_name(&identity, &live, 10).as_deref(), Some("sidecar"));
    }

    #[test]
    fn a_restart_moves_the_old_namespace_and_its_address_not_the_others() {
        let before_id = Identity::new(vec![
            container("web", 10, "bridge", &["198.18.5.2"]),
            container("sidecar", 10, "container:web-id", &[]),
            container("db", 20, "bridge", &["198.18.5.9"]),
        ]);
        let before = Topology {
            namespaces: vec![
                ns(10, "web", NetnsKind::Process, &["198.18.5.2"]),
                ns(20, "db", NetnsKind::Process, &["198.18.5.9"]),
            ],
            peers: HashMap::new(),
        };
        // web restarted: a new namespace with the same address; sidecar left in the old one.
        let after_id = Identity::new(vec![
            container("web", 30, "bridge", &["198.18.5.2"]),
            container("sidecar", 10, "container:web-id", &[]),
            container("db", 20, "bridge", &["198.18.5.9"]),
        ]);
        let after = Topology {
            namespaces: vec![
                ns(10, "sidecar", NetnsKind::Process, &[]),
                ns(20, "db", NetnsKind::Process, &["198.18.5.9"]),
                ns(30, "web", NetnsKind::Process, &["198.18.5.2"]),
            ],
            peers: HashMap::new(),
        };
        let m = moved((&before_id, &before), (&after_id, &after));
        assert_eq!(m.netns, [10].into());
        assert_eq!(m.addrs, ["198.18.5.2".parse().unwrap()].into());
        assert!(m.touches(
            20,
            Some("198.18.5.9".parse().unwrap()),
            "198.18.5.2".parse().ok()
        ));
        assert!(!m.touches(20, Some("198.18.5.9".parse().unwrap()), None));
        // Nothing changed: nothing moved.
        let m = moved((&after_id, &after), (&after_id, &after));
        assert!(m.is_empty());
        // A new container the runtime names only now (its namespace and address were there,
        // unowned): news, not a move.
        let unowned = Identity::new(vec![container("db", 20, "bridge", &["198.18.5.9"])]);
        let m = moved((&unowned, &after), (&after_id, &after));
        assert!(m.is_empty(), "{m:?}");
    }
}
