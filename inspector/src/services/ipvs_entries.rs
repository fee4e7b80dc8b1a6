//! IPVS virtual servers as Service entries, beside the iptables and nftables ones: one per
//! Service port, its `ClusterIP` virtual server giving the endpoints (real servers, by
//! address) and the scheduler. Names, and which `NodePort` is whose, come from the
//! lab's record when a lab built the node; otherwise each virtual server is an entry named
//! by its address (`-/198.18.32.10:80`): the kernel holds no name.
use std::path::Path;

use super::{Backend, ServiceEntry, ipvs::VirtualServer};
use crate::identity::lab_records::{LabRecord, RecordedService, node_ns};

/// The Service ports a lab recorded for the node namespace at `netns`.
fn recorded(netns: Option<&Path>) -> Vec<RecordedService> {
    let Some(p) = netns else {
        return Vec::new();
    };
    LabRecord::all()
        .into_iter()
        .find(|r| crate::sys::netns::named(&node_ns(&r.lab)) == p)
        .map(|r| r.services)
        .unwrap_or_default()
}

fn entry(vs: &VirtualServer, named: Option<&RecordedService>) -> ServiceEntry {
    let endpoints: Vec<String> = vs
        .dests
        .iter()
        .map(|d| format!("{}:{}", d.addr, d.port))
        .collect();
    // The kernel does not tie a NodePort's virtual servers to a Service: only a record does.
    let node_port = named.and_then(|n| n.node_port);
    let (namespace, name, port_name) = named.map_or_else(
        || {
            (
                "-".to_owned(),
                format!("{}:{}", vs.addr, vs.port),
                String::new(),
            )
        },
        |n| (n.namespace.clone(), n.name.clone(), n.port_name.clone()),
    );
    ServiceEntry {
        namespace,
        name,
        port_name,
        cluster_ip: match vs.addr {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        },
        port: vs.port,
        protocol: vs.protocol.clone(),
        node_port,
        backends: vs
            .dests
            .iter()
            .zip(&endpoints)
            .map(|(d, ep)| Backend {
                endpoint: ep.clone(),
                chain: format!("{} real server", d.forward),
                probability: Some(format!("weight {}", d.weight)),
            })
            .collect(),
        endpoints,
        chain: format!("IPVS {}:{} {}", vs.addr, vs.port, vs.scheduler),
        affinity: vs.persistent.is_some(),
        no_endpoints: if vs.dests.is_empty() {
            "no real server: IPVS has nothing to schedule".into()
        } else {
            String::new()
        },
        mode: "ipvs",
    }
}

/// The IPVS Service entries of the node namespace at `netns` (None: this one); empty when
/// the kernel has no IPVS or nothing is configured.
#[must_use]
pub fn entries(netns: Option<&Path>) -> Vec<ServiceEntry> {
    let Ok(Some(all)) = super::ipvs::dump(netns) else {
        return Vec::new();
    };
    let names = recorded(netns);
    let named = |vs: &VirtualServer| {
        names.iter().find(|n| {
            std::net::IpAddr::V4(n.cluster_ip) == vs.addr
                && n.port == vs.port
                && n.protocol == vs.protocol
        })
    };
    // One entry per ClusterIP virtual server (named, or on no node address: each unnamed
    // virtual server stands for itself when nothing names it).
    let node_port_of_named: Vec<u16> = names.iter().filter_map(|n| n.node_port).collect();
    all.iter()
        .filter(|vs| {
            named(vs).is_some() || (names.is_empty() || !node_port_of_named.contains(&vs.port))
        })
        .map(|vs| entry(vs, named(vs)))
        .collect()
}
