//! Planning a Kubernetes node's Services: kube-proxy's mode, the `ServiceCIDR`, generated
//! Services (a big cluster's rule set) and the spec's own, each with its ports, affinity
//! and endpoints (bridge workloads: the "pods").
use std::{collections::HashSet, net::Ipv4Addr};

use super::{
    LabError,
    plan::{PlannedWorkload, spec_err, subnet},
    spec::{KubeProxy, LabSpec},
};
use crate::net::Cidr;

/// Largest number of generated Services.
pub const MAX_EXTRA_SERVICES: usize = 30_000;

type ServicePlan = (
    Option<KubeProxy>,
    (Ipv4Addr, u8),
    Vec<crate::services::rules::Service>,
);

impl LabSpec {
    pub(super) fn plan_services(
        &self,
        workloads: &[PlannedWorkload],
        net: (Ipv4Addr, u8),
    ) -> Result<ServicePlan, LabError> {
        use crate::services::rules::{Port, Service, generated};
        let kube_proxy = match self.kube_proxy.as_deref() {
            None => None,
            Some("iptables") => Some(KubeProxy::Iptables),
            Some("nftables") => Some(KubeProxy::Nftables),
            Some("ipvs") => Some(KubeProxy::Ipvs),
            Some(m) => {
                return Err(spec_err(format!(
                    "kube_proxy '{m}' is not a mode this lab can build (iptables, nftables, ipvs)"
                )));
            }
        };
        let cidr = subnet(
            self.service_cidr.as_deref().unwrap_or("198.18.128.0/17"),
            "service_cidr",
        )?;
        let inside = |a: Ipv4Addr, n: (Ipv4Addr, u8)| Cidr::v4(n.0, n.1).contains(a.into());
        if inside(net.0, cidr) || inside(cidr.0, net) {
            return Err(spec_err(format!(
                "service_cidr {}/{} overlaps the bridge subnet {}",
                cidr.0, cidr.1, self.subnet
            )));
        }
        if (!self.services.is_empty() || self.extra_services > 0) && kube_proxy.is_none() {
            return Err(spec_err(
                "services need kube_proxy = \"iptables\", \"nftables\" or \"ipvs\"",
            ));
        }
        if self.extra_services > MAX_EXTRA_SERVICES {
            return Err(spec_err(format!(
                "extra_services {} is more than {MAX_EXTRA_SERVICES}",
                self.extra_services
            )));
        }
        let size = 1usize << (32 - cidr.1);
        if self.extra_services + 256 > size {
            return Err(spec_err(format!(
                "service_cidr {}/{} has no room for {} generated services (they start at its 256th address)",
                cidr.0, cidr.1, self.extra_services
            )));
        }
        let mut out = generated(
            self.extra_services,
            3,
            Ipv4Addr::from(u32::from(cidr.0) + 256),
            Ipv4Addr::new(198, 19, 128, 0),
        );
        let mut seen = HashSet::new();
        let mut vips = HashSet::new();
        for s in &self.services {
            let label = format!("service '{}/{}'", s.namespace, s.name);
            let name_ok = |n: &str| {
                !n.is_empty()
                    && n.len() <= 63
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            if !name_ok(&s.namespace) || !name_ok(&s.name) {
                return Err(spec_err(format!(
                    "{label}: namespace and name must be DNS labels (a-z, 0-9, '-')"
                )));
            }
            if !seen.insert((s.namespace.clone(), s.name.clone())) {
                return Err(spec_err(format!("duplicate {label}")));
            }
            let vip: Ipv4Addr = s.cluster_ip.parse().map_err(|_| {
                spec_err(format!(
                    "{label}: cluster_ip '{}' is not IPv4",
                    s.cluster_ip
                ))
            })?;
            if !inside(vip, cidr) {
                return Err(spec_err(format!(
                    "{label}: cluster_ip {vip} is outside service_cidr {}/{}",
                    cidr.0, cidr.1
                )));
            }
            if u32::from(vip) - u32::from(cidr.0) >= 256 && self.extra_services > 0 {
                return Err(spec_err(format!(
                    "{label}: cluster_ip {vip} is in the generated services' range (use the first 256 addresses of service_cidr)"
                )));
            }
            if !vips.insert(vip) {
                return Err(spec_err(format!("{label}: cluster_ip {vip} is taken")));
            }
            if s.ports.is_empty() {
                return Err(spec_err(format!("{label} has no ports")));
            }
            let mut ports = Vec::new();
            for p in &s.ports {
                if p.protocol != "tcp" && p.protocol != "udp" {
                    return Err(spec_err(format!(
                        "{label}: protocol '{}' must be tcp or udp",
                        p.protocol
                    )));
                }
                if p.port == 0 || p.target_port == Some(0) {
                    return Err(spec_err(format!("{label}: port 0 is not a port")));
                }
                if let Some(np) = p.node_port
                    && !(30000..=32767).contains(&np)
                {
                    return Err(spec_err(format!(
                        "{label}: node_port {np} is outside 30000-32767"
                    )));
                }
                if s.ports.len() > 1 && p.name.is_empty() {
                    return Err(spec_err(format!(
                        "{label}: every port needs a name when there are several"
                    )));
                }
                ports.push(Port {
                    name: p.name.clone(),
                    port: p.port,
                    target_port: p.target_port.unwrap_or(p.port),
                    protocol: p.protocol.clone(),
                    node_port: p.node_port,
                });
            }
            let affinity = match s.session_affinity.as_deref() {
                None | Some("None") => None,
                Some("ClientIP") => Some(s.affinity_timeout.unwrap_or(10_800)),
                Some(o) => {
                    return Err(spec_err(format!(
                        "{label}: session_affinity '{o}' must be None or ClientIP"
                    )));
                }
            };
            let mut endpoints = Vec::new();
            for e in &s.endpoints {
                let w = workloads.iter().find(|w| &w.name == e).ok_or_else(|| {
                    spec_err(format!(
                        "{label}: endpoint '{e}' names no workload of the lab"
                    ))
                })?;
                let ip = w.addr.ok_or_else(|| {
                    spec_err(format!("{label}: endpoint '{e}' is not in bridge mode (pods have their own address)"))
                })?;
                endpoints.push(ip);
            }
            out.push(Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                cluster_ip: vip,
                ports,
                affinity,
                endpoints,
            });
        }
        let mut nps = HashSet::new();
        for s in &out {
            for p in &s.ports {
                if let Some(np) = p.node_port
                    && !nps.insert((p.protocol.clone(), np))
                {
                    return Err(spec_err(format!(
                        "node_port {np}/{} is used twice",
                        p.protocol
                    )));
                }
            }
        }
        Ok((kube_proxy, cidr, out))
    }
}
