//! Where a path starts and where it goes: a workload's namespace or a namespace itself; an
//! address, a Service (its `ClusterIP`) or a workload's address.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use super::{PathError, PathOptions};
use crate::{
    identity::{Tracker, lab_records::LabRecord},
    services::attrib::Services,
    session::start::resolve_netns,
    topology,
};

/// The source: a namespace to connect from, and what it is.
pub struct Source {
    pub netns: PathBuf,
    pub label: String,
    pub ips: Vec<IpAddr>,
    /// The lab node namespace the source belongs to (its Services are the lab's).
    pub node: Option<String>,
}

/// The lab node of a workload id ("lab/name") or namespace name ("lab-...").
fn lab_node(id_or_ns: &str) -> Option<String> {
    LabRecord::all()
        .into_iter()
        .find(|r| {
            id_or_ns.starts_with(&format!("{}/", r.lab))
                || r.namespaces.iter().any(|n| n == id_or_ns)
        })
        .map(|r| crate::identity::lab_records::node_ns(&r.lab))
}

fn workload<'a>(t: &'a Tracker, key: &str) -> Option<&'a crate::identity::Workload> {
    t.identity
        .live()
        .iter()
        .find(|w| w.name == key || w.id == key)
        .or_else(|| t.identity.find(key))
}

pub(super) fn source(o: &PathOptions, tracker: &Tracker) -> Result<Source, PathError> {
    endpoint(&o.src, o.src_pick.as_ref(), tracker)
}

/// A workload (container or pod, named as `pick` names it, or by `spec`: its name or id, a
/// lab workload) or a network namespace (`host`, an `ip netns` name, an inode, a path): its
/// namespace and addresses.
///
/// # Errors
/// Nothing of that name, or a workload without a namespace.
pub fn endpoint(
    spec: &str,
    pick: Option<&crate::identity::select::Pick>,
    tracker: &Tracker,
) -> Result<Source, PathError> {
    let all = topology::netns::discover();
    let named = match pick {
        Some(p) => Some(
            p.find(&tracker.identity)
                .ok_or_else(|| PathError::NoSource(spec.to_owned()))?,
        ),
        None => workload(tracker, spec),
    };
    if let Some(w) = named {
        let ns = w
            .netns
            .and_then(|ino| all.iter().find(|n| n.inode == ino))
            .ok_or_else(|| PathError::SourceWithoutNetns(w.name.clone()))?;
        return Ok(Source {
            netns: ns.path.clone(),
            label: w.name.clone(),
            ips: w.ips.clone(),
            node: lab_node(&w.id),
        });
    }
    let ns = resolve_netns(spec, &all).map_err(|_| PathError::NoSource(spec.to_owned()))?;
    Ok(Source {
        netns: ns.path.clone(),
        label: ns.name.clone(),
        ips: Vec::new(),
        node: lab_node(&ns.name),
    })
}

pub(super) fn destination(
    o: &PathOptions,
    src: &Source,
    tracker: &Tracker,
    services: &Services,
) -> Result<SocketAddr, PathError> {
    if let Some((p, port)) = &o.dst_pick {
        let w = p
            .find(&tracker.identity)
            .ok_or_else(|| PathError::NoDestination(o.dst.clone()))?;
        let ip = w
            .ips
            .first()
            .copied()
            .ok_or_else(|| PathError::NoAddress(w.name.clone()))?;
        return Ok(SocketAddr::new(ip, *port));
    }
    let (host, port) = crate::net::split_port(&o.dst);
    let proto = o.proto.to_string();
    if let Ok(ip) = host.parse::<IpAddr>() {
        let port = port.ok_or_else(|| PathError::NeedsPort(o.dst.clone(), "IP:PORT"))?;
        return Ok(SocketAddr::new(ip, port));
    }
    if host.contains('/') {
        // A lab workload's Services are its lab's; otherwise the host's (or any node's).
        let mut m = services.entries().filter(|(node, e)| {
            src.node.as_deref().is_none_or(|n| n == *node)
                && e.ns_name() == host
                && e.cluster_ip.is_some()
                && e.protocol == proto
                && port.is_none_or(|p| p == e.port)
        });
        if let Some((_, e)) = m.next() {
            if port.is_none() && m.next().is_some() {
                return Err(PathError::SeveralPorts(host.to_owned()));
            }
            let ip = e.cluster_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            return Ok(SocketAddr::new(IpAddr::V4(ip), e.port));
        }
        if tracker.identity.find(host).is_none() {
            return Err(PathError::NoService {
                name: host.to_owned(),
                proto: o.proto,
                port: port.map(|p| format!(" {p}")).unwrap_or_default(),
            });
        }
    }
    let w = workload(tracker, host).ok_or_else(|| PathError::NoDestination(o.dst.clone()))?;
    let ip = w
        .ips
        .first()
        .copied()
        .ok_or_else(|| PathError::NoAddress(w.name.clone()))?;
    let port = port.ok_or_else(|| PathError::NeedsPort(o.dst.clone(), "NAME:PORT"))?;
    Ok(SocketAddr::new(ip, port))
}
