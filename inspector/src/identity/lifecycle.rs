//! Lifecycle events: namespaces and links appearing and disappearing between two scans,
//! each named with the workload that owns it, plus the runtime's own container events.
use serde::Serialize;

use super::{Endpoint, Identity, docker};
use crate::topology::{LinkKind, Topology};

/// One thing that appeared or disappeared (`"type": "lifecycle"`).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub time_unix_ns: u64,
    /// appeared, disappeared; or the runtime's action (create, start, die, destroy, ...).
    pub action: String,
    /// netns, link, container.
    pub object: &'static str,
    pub netns: Option<u64>,
    pub netns_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_kind: Option<String>,
    /// The other end of a veth, "netns/ifname".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Who owns it (null if nobody we know).
    pub workload: Option<Endpoint>,
    /// The namespace of a veth's other end (to name it after that end's owner).
    #[serde(skip)]
    pub peer_netns: Option<u64>,
}

/// An owner known only from its cgroup (named by its id): its runtime usually names it a
/// moment later.
fn provisional(e: &Endpoint) -> bool {
    e.name.is_some() && e.name == e.id.as_deref().map(|i| super::short_id(i).to_owned())
}

/// Holds back "appeared" events nobody owns yet - a namespace is often made before its
/// runtime reports the container, and a veth pair is made with both ends on the host before
/// one end moves into it - and names them once the runtime has caught up (or gives up after
/// `patience` scans and says so with a null owner).
#[derive(Default)]
pub struct Namer {
    pending: Vec<(u32, Event)>,
}

impl Namer {
    /// Takes this scan's events; returns those ready to show, in order. `topo` is the scan
    /// they came from: a held-back link's other end is looked up again in it (it may have
    /// moved into the container's namespace since the link appeared).
    pub fn ready(
        &mut self,
        new: Vec<Event>,
        identity: &Identity,
        topo: &Topology,
        patience: u32,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        let mut keep = Vec::new();
        // A held-back thing that went away is shown before its going, so events stay in order.
        let gone: Vec<(u64, Option<u32>)> = new
            .iter()
            .filter(|e| e.action == "disappeared")
            .filter_map(|e| Some((e.netns?, e.ifindex)))
            .collect();
        for (age, mut e) in std::mem::take(&mut self.pending)
            .into_iter()
            .chain(new.into_iter().map(|e| (0, e)))
        {
            if age > 0 && e.object == "link" {
                e.refresh_peer(topo);
            }
            if e.workload.as_ref().is_none_or(provisional) {
                e.workload = e
                    .netns
                    .and_then(|n| owner(identity, n))
                    .or_else(|| e.peer_netns.and_then(|n| owner(identity, n)));
            }
            let named = e.workload.as_ref().is_some_and(|w| !provisional(w));
            let flush = e.netns.is_some_and(|n| {
                gone.iter()
                    .any(|&(gn, gi)| gn == n && (gi.is_none() || gi == e.ifindex))
            });
            if named || e.action != "appeared" || age >= patience || flush {
                out.push(e);
            } else {
                keep.push((age + 1, e));
            }
        }
        self.pending = keep;
        out
    }
}

impl Event {
    /// Looks up this link's other end again in `topo`.
    fn refresh_peer(&mut self, topo: &Topology) {
        let (Some(ns), Some(ifindex)) = (self.netns, self.ifindex) else {
            return;
        };
        let Some(&p) = topo.peers.get(&(ns, ifindex)) else {
            return;
        };
        if let Some((pns, pl)) = topo.link(p) {
            self.peer = Some(format!("{}/{}", pns.netns.name, pl.name));
            self.peer_netns = Some(p.0);
        }
    }
}

fn now_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn owner(identity: &Identity, netns: u64) -> Option<Endpoint> {
    let ws: Vec<&super::Workload> = identity.in_netns(netns).collect();
    // A namespace with a host-mode workload is a node's: nobody's in particular.
    if ws.iter().any(|w| w.is_host_mode()) {
        return None;
    }
    match ws.as_slice() {
        [] => None,
        [one] => Some(Endpoint::of(one)),
        many => Some(Endpoint::shared(many)),
    }
}

/// What changed from `old` to `new`. A veth's owner is the workload at either end that is
/// not the host's (the host end of a container's pair is named after the container).
#[must_use]
pub fn diff(old: &Topology, new: &Topology, identity: &Identity) -> Vec<Event> {
    let mut out = Vec::new();
    let t = now_ns();
    let link_owner = |topo: &Topology, ns: u64, ifindex: u32| {
        owner(identity, ns).or_else(|| {
            let p = topo.peers.get(&(ns, ifindex))?;
            owner(identity, p.0)
        })
    };
    for (action, from, to) in [("disappeared", old, new), ("appeared", new, old)] {
        for ns in &from.namespaces {
            let other = to.ns(ns.netns.inode);
            if other.is_none() {
                out.push(Event {
                    time_unix_ns: t,
                    action: action.into(),
                    object: "netns",
                    netns: Some(ns.netns.inode),
                    netns_name: Some(ns.netns.name.clone()),
                    ifname: None,
                    ifindex: None,
                    link_kind: None,
                    peer: None,
                    workload: owner(identity, ns.netns.inode),
                    peer_netns: None,
                });
            }
            for l in &ns.links {
                if other.is_some_and(|o| {
                    o.links
                        .iter()
                        .any(|x| x.ifindex == l.ifindex && x.name == l.name)
                }) {
                    continue;
                }
                if l.kind == LinkKind::Loopback {
                    continue;
                }
                let peer_id = from.peers.get(&(ns.netns.inode, l.ifindex)).copied();
                let peer = peer_id.and_then(|p| {
                    let (pns, pl) = from.link(p)?;
                    Some(format!("{}/{}", pns.netns.name, pl.name))
                });
                out.push(Event {
                    time_unix_ns: t,
                    action: action.into(),
                    object: "link",
                    netns: Some(ns.netns.inode),
                    netns_name: Some(ns.netns.name.clone()),
                    ifname: Some(l.name.clone()),
                    ifindex: Some(l.ifindex),
                    link_kind: Some(l.kind.to_string()),
                    peer,
                    workload: link_owner(from, ns.netns.inode, l.ifindex),
                    peer_netns: peer_id.map(|p| p.0),
                });
            }
        }
    }
    // Disappearances first (as they happened before the appearances of this scan).
    out
}

/// A runtime's container event as a lifecycle event.
#[must_use]
pub fn from_docker(e: &docker::DockerEvent, identity: &Identity) -> Event {
    let w = identity
        .workloads
        .iter()
        .find(|w| w.id == e.id)
        .map(Endpoint::of)
        .filter(|w| !provisional(w))
        .or_else(|| {
            Some(Endpoint {
                name: Some(e.name.clone()),
                id: Some(e.id.clone()),
                kind: Some("container".into()),
                runtime: Some("docker".into()),
                network_mode: None,
                shared_by: Vec::new(),
            })
        });
    Event {
        time_unix_ns: if e.time_ns > 0 { e.time_ns } else { now_ns() },
        action: e.action.clone(),
        object: "container",
        netns: None,
        netns_name: None,
        ifname: None,
        ifindex: None,
        link_kind: None,
        peer: None,
        workload: w,
        peer_netns: None,
    }
}
