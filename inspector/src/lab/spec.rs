//! The four-mode lab's spec: a TOML file (or the embedded default) naming the workloads, each
//! in one of Docker's network modes, the bridge subnet, published ports and an optional
//! external client. `plan` validates everything and computes every name and address before
//! anything is created, so a bad spec changes nothing.
use std::{collections::HashSet, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

/// The embedded default: one workload per mode, a published port and an outside client.
pub const DEFAULT_SPEC: &str = r#"# inspector lab: Docker's four network modes, rebuilt in namespaces.
name = "insp-lab"
bridge = "docker0"
subnet = "198.18.20.0/24"

[[workload]]
name = "web"
mode = "bridge"
publish = ["8080:80/tcp"]

[[workload]]
name = "client"
mode = "bridge"

[[workload]]
name = "sidecar"
mode = "container:web"

[[workload]]
name = "agent"
mode = "host"

[[workload]]
name = "batch"
mode = "none"

[external]
name = "ext"
subnet = "198.18.21.0/24"
"#;

/// The embedded Kubernetes-node spec: three "pods" behind Services (one with a `NodePort`,
/// one with `ClientIP` affinity, one without endpoints), a client pod, an outside client, and
/// kube-proxy's rules in iptables mode (`lab up --kube nftables` switches the mode).
pub const KUBE_SPEC: &str = r#"# inspector lab: a Kubernetes node's Service routing, with kube-proxy's exact rules.
name = "insp-kube"
bridge = "cni0"
subnet = "198.18.30.0/24"
docker_rules = false
kube_proxy = "iptables"
service_cidr = "198.18.32.0/24"

[[workload]]
name = "web-0"
mode = "bridge"

[[workload]]
name = "web-1"
mode = "bridge"

[[workload]]
name = "web-2"
mode = "bridge"

[[workload]]
name = "client"
mode = "bridge"

[external]
name = "ext"
subnet = "198.18.31.0/24"

[[service]]
namespace = "shop"
name = "web"
cluster_ip = "198.18.32.10"
endpoints = ["web-0", "web-1", "web-2"]
[[service.port]]
name = "http"
port = 80
target_port = 8080
node_port = 30080

[[service]]
namespace = "shop"
name = "sticky"
cluster_ip = "198.18.32.11"
session_affinity = "ClientIP"
endpoints = ["web-0", "web-1", "web-2"]
[[service.port]]
port = 80
target_port = 8080

[[service]]
namespace = "shop"
name = "empty"
cluster_ip = "198.18.32.12"
[[service.port]]
name = "http"
port = 80
"#;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// Prefix of every namespace and cgroup of the lab.
    pub name: String,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// The bridge network; the bridge gets its first address.
    pub subnet: String,
    #[serde(default, rename = "workload")]
    pub workloads: Vec<WorkloadSpec>,
    pub external: Option<ExternalSpec>,
    /// Docker's iptables rules on the node (default true). A Kubernetes-node lab turns them
    /// off: Docker's FORWARD drops would hide kube-proxy's paths in nftables mode.
    #[serde(default = "yes")]
    pub docker_rules: bool,
    /// kube-proxy's mode for the lab's Services: "iptables" or "nftables".
    pub kube_proxy: Option<String>,
    /// The `ServiceCIDR` `ClusterIPs` come from (default 198.18.128.0/17).
    pub service_cidr: Option<String>,
    /// Services whose endpoints are lab workloads ("pods").
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceSpec>,
    /// Generated Services (`scale/svc-N`, 3 endpoints each, nothing listening) added before
    /// the spec's own, to give the rule set a big cluster's size (at most 30,000).
    #[serde(default)]
    pub extra_services: usize,
}

fn yes() -> bool {
    true
}

/// A Kubernetes Service of the lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    pub cluster_ip: String,
    #[serde(rename = "port")]
    pub ports: Vec<ServicePortSpec>,
    /// "None" (default) or "`ClientIP`".
    pub session_affinity: Option<String>,
    /// `ClientIP` affinity timeout (default 10800 s, as Kubernetes).
    pub affinity_timeout: Option<u32>,
    /// Workloads (bridge mode) that are the Service's ready endpoints.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortSpec {
    #[serde(default)]
    pub name: String,
    pub port: u16,
    /// Default: `port`.
    pub target_port: Option<u16>,
    #[serde(default = "default_proto")]
    pub protocol: String,
    pub node_port: Option<u16>,
}

fn default_proto() -> String {
    "tcp".into()
}

/// kube-proxy's proxy mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeProxy {
    Iptables,
    Nftables,
}

impl KubeProxy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
        }
    }
}

fn default_bridge() -> String {
    "docker0".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: String,
    /// bridge, host, none, or container:<workload>.
    pub mode: String,
    /// Bridge mode only; default: the next free address of the subnet.
    pub addr: Option<String>,
    /// Bridge mode only: "HOSTPORT:PORT[/tcp|udp]".
    #[serde(default)]
    pub publish: Vec<String>,
}

/// A namespace outside the node, routed to it (a client "on the network").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    pub name: String,
    pub subnet: String,
}

/// A network mode as the lab builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Bridge,
    Host,
    None,
    Container(String),
}

impl Mode {
    #[must_use]
    pub fn as_string(&self) -> String {
        match self {
            Self::Bridge => "bridge".into(),
            Self::Host => "host".into(),
            Self::None => "none".into(),
            Self::Container(c) => format!("container:{c}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub proto: String,
    pub host_port: u16,
    pub port: u16,
}

/// One workload with everything computed.
#[derive(Clone, Debug)]
pub struct PlannedWorkload {
    pub name: String,
    pub mode: Mode,
    /// The namespace it lives in (its own, the node's, or its target's).
    pub netns: String,
    /// Bridge mode: its address, and its veth's name on the node.
    pub addr: Option<Ipv4Addr>,
    pub host_veth: Option<String>,
    pub publish: Vec<Publish>,
}

/// A validated spec.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub node_ns: String,
    pub bridge: String,
    pub subnet: (Ipv4Addr, u8),
    pub gateway: Ipv4Addr,
    pub workloads: Vec<PlannedWorkload>,
    /// (namespace, node-side veth, node address, external address, prefix).
    pub external: Option<(String, String, Ipv4Addr, Ipv4Addr, u8)>,
    pub docker_rules: bool,
    pub kube_proxy: Option<KubeProxy>,
    pub service_cidr: (Ipv4Addr, u8),
    /// Generated ones first, then the spec's (the spec's are last in iptables order).
    pub services: Vec<crate::services::rules::Service>,
}

fn in_range(a: Ipv4Addr) -> bool {
    a.octets()[0] == 198 && a.octets()[1] & 0xfe == 18
}

/// Parses "198.18.20.0/24": the network address, inside 198.18.0.0/15.
fn subnet(s: &str, what: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{what} '{s}' is not a CIDR (a.b.c.d/len)"))?;
    let a: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{what} '{s}' is not an IPv4 CIDR"))?;
    let p: u8 = p
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("{what} '{s}': the prefix length must be 8..30"))?;
    let mask = u32::MAX << (32 - p);
    if u32::from(a) & !mask != 0 {
        return Err(format!("{what} '{s}' has host bits set"));
    }
    if !in_range(a) {
        return Err(format!(
            "{what} '{s}' is outside 198.18.0.0/15, the only range labs may use"
        ));
    }
    Ok((a, p))
}

fn nth(net: (Ipv4Addr, u8), n: u32) -> Result<Ipv4Addr, String> {
    let size = 1u32 << (32 - net.1);
    if n == 0 || n >= size - 1 {
        return Err(format!(
            "subnet {}/{} has no room for another address",
            net.0, net.1
        ));
    }
    Ok(Ipv4Addr::from(u32::from(net.0) + n))
}

fn publish(s: &str) -> Result<Publish, String> {
    let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if proto != "tcp" && proto != "udp" {
        return Err(format!("published port '{s}': protocol must be tcp or udp"));
    }
    let (h, c) = ports
        .split_once(':')
        .ok_or_else(|| format!("published port '{s}' must be HOSTPORT:PORT[/proto]"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("published port '{s}': '{p}' is not a port"))
    };
    Ok(Publish {
        proto: proto.into(),
        host_port: port(h)?,
        port: port(c)?,
    })
}

/// 7 hex digits from a name, like Docker's `veth` + random suffix but stable.
fn hex7(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{:07x}", h & 0x0fff_ffff)
}

impl LabSpec {
    /// Parses TOML.
    ///
    /// # Errors
    /// Syntax errors and unknown fields, with toml's location.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    /// Validates the spec and computes every name and address.
    ///
    /// # Errors
    /// The first problem, in one line.
    pub fn plan(&self) -> Result<Plan, String> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !name_ok(&self.name) || self.name.len() > 12 {
            return Err(format!(
                "lab name '{}' must be 1-12 characters of a-z, 0-9 and '-'",
                self.name
            ));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 {
            return Err(format!(
                "bridge name '{}' must be 1-15 characters",
                self.bridge
            ));
        }
        let net = subnet(&self.subnet, "subnet")?;
        let gateway = nth(net, 1)?;
        let mut names = HashSet::new();
        for w in &self.workloads {
            if !name_ok(&w.name) || w.name.len() > 12 {
                return Err(format!(
                    "workload name '{}' must be 1-12 characters of a-z, 0-9 and '-'",
                    w.name
                ));
            }
            if !names.insert(w.name.as_str()) {
                return Err(format!("duplicate workload name '{}'", w.name));
            }
        }
        let node_ns = format!("{}-node", self.name);
        let mut used = HashSet::from([gateway]);
        let mut next = 2u32;
        let mut out = Vec::new();
        for w in &self.workloads {
            let mode = match w.mode.as_str() {
                "bridge" => Mode::Bridge,
                "host" => Mode::Host,
                "none" => Mode::None,
                m => match m.strip_prefix("container:") {
                    Some(t) if names.contains(t) && t != w.name => Mode::Container(t.into()),
                    Some(t) => {
                        return Err(format!(
                            "workload '{}': mode container:{t} names no other workload of the lab",
                            w.name
                        ));
                    }
                    None => {
                        return Err(format!(
                            "workload '{}': unknown network mode '{m}' (bridge, host, none, container:<workload>)",
                            w.name
                        ));
                    }
                },
            };
            if mode != Mode::Bridge && (!w.publish.is_empty() || w.addr.is_some()) {
                return Err(format!(
                    "workload '{}': only bridge mode has an address or published ports (as in Docker)",
                    w.name
                ));
            }
            let addr = if mode == Mode::Bridge {
                let a = match &w.addr {
                    Some(a) => {
                        let ip: Ipv4Addr = a.parse().map_err(|_| {
                            format!("workload '{}': addr '{a}' is not IPv4", w.name)
                        })?;
                        let mask = u32::MAX << (32 - net.1);
                        if u32::from(ip) & mask != u32::from(net.0) {
                            return Err(format!(
                                "workload '{}': addr {ip} is outside the subnet {}",
                                w.name, self.subnet
                            ));
                        }
                        ip
                    }
                    None => loop {
                        let a = nth(net, next)?;
                        next += 1;
                        if !used.contains(&a) {
                            break a;
                        }
                    },
                };
                if !used.insert(a) {
                    return Err(format!("workload '{}': address {a} is taken", w.name));
                }
                Some(a)
            } else {
                None
            };
            let publish = w
                .publish
                .iter()
                .map(|p| publish(p))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(PlannedWorkload {
                name: w.name.clone(),
                netns: String::new(),
                host_veth: (mode == Mode::Bridge)
                    .then(|| format!("veth{}", hex7(&format!("{}/{}", self.name, w.name)))),
                mode,
                addr,
                publish,
            });
        }
        let mut ports = HashSet::new();
        for p in out.iter().flat_map(|w| &w.publish) {
            if !ports.insert((p.proto.clone(), p.host_port)) {
                return Err(format!(
                    "host port {}/{} is published twice",
                    p.host_port, p.proto
                ));
            }
        }
        // Namespaces: own for bridge/none, the node's for host, the target's for container.
        for i in 0..out.len() {
            let mut seen = HashSet::new();
            let mut cur = i;
            let ns = loop {
                if !seen.insert(cur) {
                    return Err(format!(
                        "workload '{}': container modes form a cycle",
                        out[i].name
                    ));
                }
                match &out[cur].mode {
                    Mode::Bridge | Mode::None => break format!("{}-{}", self.name, out[cur].name),
                    Mode::Host => break node_ns.clone(),
                    Mode::Container(t) => {
                        cur = out.iter().position(|w| &w.name == t).unwrap_or(cur);
                    }
                }
            };
            out[i].netns = ns;
        }
        let external = match &self.external {
            None => None,
            Some(e) => {
                if !name_ok(&e.name) || e.name.len() > 12 || names.contains(e.name.as_str()) {
                    return Err(format!(
                        "external name '{}' must be 1-12 characters of a-z, 0-9, '-' and not a workload's",
                        e.name
                    ));
                }
                let en = subnet(&e.subnet, "external subnet")?;
                let overlap = |a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)| {
                    let m = u32::MAX << (32 - a.1.min(b.1));
                    u32::from(a.0) & m == u32::from(b.0) & m
                };
                if overlap(net, en) {
                    return Err(format!(
                        "external subnet {} overlaps the bridge subnet {}",
                        e.subnet, self.subnet
                    ));
                }
                Some((
                    format!("{}-{}", self.name, e.name),
                    format!("ext{}", hex7(&e.name)),
                    nth(en, 1)?,
                    nth(en, 2)?,
                    en.1,
                ))
            }
        };
        let (kube_proxy, service_cidr, services) = self.plan_services(&out, net)?;
        Ok(Plan {
            name: self.name.clone(),
            node_ns,
            bridge: self.bridge.clone(),
            subnet: net,
            gateway,
            workloads: out,
            external,
            docker_rules: self.docker_rules,
            kube_proxy,
            service_cidr,
            services,
        })
    }
}

/// Largest number of generated Services.
pub const MAX_EXTRA_SERVICES: usize = 30_000;

type ServicePlan = (
    Option<KubeProxy>,
    (Ipv4Addr, u8),
    Vec<crate::services::rules::Service>,
);

impl LabSpec {
    fn plan_services(
        &self,
        workloads: &[PlannedWorkload],
        net: (Ipv4Addr, u8),
    ) -> Result<ServicePlan, String> {
        use crate::services::rules::{Port, Service, generated};
        let kube_proxy = match self.kube_proxy.as_deref() {
            None => None,
            Some("iptables") => Some(KubeProxy::Iptables),
            Some("nftables") => Some(KubeProxy::Nftables),
            Some(m) => {
                return Err(format!(
                    "kube_proxy '{m}' is not a mode this lab can build (iptables, nftables; IPVS needs a kernel with IP_VS)"
                ));
            }
        };
        let cidr = subnet(
            self.service_cidr.as_deref().unwrap_or("198.18.128.0/17"),
            "service_cidr",
        )?;
        let inside = |a: Ipv4Addr, n: (Ipv4Addr, u8)| {
            let m = u32::MAX << (32 - n.1);
            u32::from(a) & m == u32::from(n.0)
        };
        if inside(net.0, cidr) || inside(cidr.0, net) {
            return Err(format!(
                "service_cidr {}/{} overlaps the bridge subnet {}",
                cidr.0, cidr.1, self.subnet
            ));
        }
        if (!self.services.is_empty() || self.extra_services > 0) && kube_proxy.is_none() {
            return Err("services need kube_proxy = \"iptables\" or \"nftables\"".into());
        }
        if self.extra_services > MAX_EXTRA_SERVICES {
            return Err(format!(
                "extra_services {} is more than {MAX_EXTRA_SERVICES}",
                self.extra_services
            ));
        }
        let size = 1usize << (32 - cidr.1);
        if self.extra_services + 256 > size {
            return Err(format!(
                "service_cidr {}/{} has no room for {} generated services (they start at its 256th address)",
                cidr.0, cidr.1, self.extra_services
            ));
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
                return Err(format!(
                    "{label}: namespace and name must be DNS labels (a-z, 0-9, '-')"
                ));
            }
            if !seen.insert((s.namespace.clone(), s.name.clone())) {
                return Err(format!("duplicate {label}"));
            }
            let vip: Ipv4Addr = s
                .cluster_ip
                .parse()
                .map_err(|_| format!("{label}: cluster_ip '{}' is not IPv4", s.cluster_ip))?;
            if !inside(vip, cidr) {
                return Err(format!(
                    "{label}: cluster_ip {vip} is outside service_cidr {}/{}",
                    cidr.0, cidr.1
                ));
            }
            if u32::from(vip) - u32::from(cidr.0) >= 256 && self.extra_services > 0 {
                return Err(format!(
                    "{label}: cluster_ip {vip} is in the generated services' range (use the first 256 addresses of service_cidr)"
                ));
            }
            if !vips.insert(vip) {
                return Err(format!("{label}: cluster_ip {vip} is taken"));
            }
            if s.ports.is_empty() {
                return Err(format!("{label} has no ports"));
            }
            let mut ports = Vec::new();
            for p in &s.ports {
                if p.protocol != "tcp" && p.protocol != "udp" {
                    return Err(format!(
                        "{label}: protocol '{}' must be tcp or udp",
                        p.protocol
                    ));
                }
                if p.port == 0 || p.target_port == Some(0) {
                    return Err(format!("{label}: port 0 is not a port"));
                }
                if let Some(np) = p.node_port
                    && !(30000..=32767).contains(&np)
                {
                    return Err(format!("{label}: node_port {np} is outside 30000-32767"));
                }
                if s.ports.len() > 1 && p.name.is_empty() {
                    return Err(format!(
                        "{label}: every port needs a name when there are several"
                    ));
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
                    return Err(format!(
                        "{label}: session_affinity '{o}' must be None or ClientIP"
                    ));
                }
            };
            let mut endpoints = Vec::new();
            for e in &s.endpoints {
                let w = workloads.iter().find(|w| &w.name == e).ok_or_else(|| {
                    format!("{label}: endpoint '{e}' names no workload of the lab")
                })?;
                let ip = w.addr.ok_or_else(|| {
                    format!("{label}: endpoint '{e}' is not in bridge mode (pods have their own address)")
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
                    return Err(format!("node_port {np}/{} is used twice", p.protocol));
                }
            }
        }
        Ok((kube_proxy, cidr, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan, String> {
        LabSpec::from_toml(text)?.plan()
    }

    #[test]
    fn kube_spec_plans_services_with_their_pods() {
        let p = plan(KUBE_SPEC).expect("kube spec");
        assert_eq!(p.kube_proxy, Some(KubeProxy::Iptables));
        assert!(!p.docker_rules);
        assert_eq!(p.services.len(), 3);
        let web = &p.services[0];
        assert_eq!(web.cluster_ip, Ipv4Addr::new(198, 18, 32, 10));
        assert_eq!(
            web.endpoints,
            [2, 3, 4].map(|i| Ipv4Addr::new(198, 18, 30, i))
        );
        assert_eq!(web.ports[0].node_port, Some(30080));
        assert_eq!(p.services[1].affinity, Some(10_800));
        assert!(p.services[2].endpoints.is_empty());
        let nft =
            plan(&KUBE_SPEC.replace("kube_proxy = \"iptables\"", "kube_proxy = \"nftables\""))
                .unwrap();
        assert_eq!(nft.kube_proxy, Some(KubeProxy::Nftables));
    }

    #[test]
    fn bad_services_are_refused_with_their_reason() {
        for (from, to, want) in [
            (
                "kube_proxy = \"iptables\"",
                "kube_proxy = \"ipvs\"",
                "IPVS needs a kernel",
            ),
            (
                "kube_proxy = \"iptables\"\n",
                "",
                "services need kube_proxy",
            ),
            (
                "\"web-0\", \"web-1\", \"web-2\"]\n[[service.port]]\nname",
                "\"nope\"]\n[[service.port]]\nname",
                "names no workload",
            ),
            (
                "node_port = 30080",
                "node_port = 8080",
                "outside 30000-32767",
            ),
            (
                "cluster_ip = \"198.18.32.10\"",
                "cluster_ip = \"198.18.33.10\"",
                "outside service_cidr",
            ),
            (
                "cluster_ip = \"198.18.32.11\"",
                "cluster_ip = \"198.18.32.10\"",
                "is taken",
            ),
            (
                "session_affinity = \"ClientIP\"",
                "session_affinity = \"Sticky\"",
                "None or ClientIP",
            ),
            (
                "service_cidr = \"198.18.32.0/24\"",
                "service_cidr = \"198.18.30.0/23\"",
                "overlaps the bridge",
            ),
            ("name = \"sticky\"", "name = \"web\"", "duplicate service"),
            (
                "docker_rules = false",
                "docker_rules = false\nextra_services = 30001",
                "more than 30000",
            ),
        ] {
            let text = KUBE_SPEC.replacen(from, to, 1);
            assert_ne!(text, KUBE_SPEC, "{from:?} not in the spec");
            let e = plan(&text).expect_err(want);
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn extra_services_come_first_in_rule_order() {
        let text = KUBE_SPEC
            .replace(
                "docker_rules = false",
                "docker_rules = false\nextra_services = 1000",
            )
            .replace(
                "service_cidr = \"198.18.32.0/24\"",
                "service_cidr = \"198.18.128.0/17\"",
            )
            .replace("198.18.32.1", "198.18.128.1");
        let p = plan(&text).unwrap();
        assert_eq!(p.services.len(), 1003);
        assert_eq!(p.services[0].name, "svc-0");
        assert_eq!(p.services[1000].name, "web");
        assert_eq!(p.services[0].cluster_ip, Ipv4Addr::new(198, 18, 129, 0));
    }

    #[test]
    fn default_spec_plans_all_four_modes() {
        let p = plan(DEFAULT_SPEC).expect("default spec");
        let modes: Vec<String> = p.workloads.iter().map(|w| w.mode.as_string()).collect();
        assert_eq!(modes, ["bridge", "bridge", "container:web", "host", "none"]);
        let web = &p.workloads[0];
        assert_eq!(web.addr, Some(Ipv4Addr::new(198, 18, 20, 2)));
        assert_eq!(
            web.publish,
            [Publish {
                proto: "tcp".into(),
                host_port: 8080,
                port: 80
            }]
        );
        assert_eq!(
            p.workloads[2].netns, "insp-lab-web",
            "container mode joins its target"
        );
        assert_eq!(
            p.workloads[3].netns, "insp-lab-node",
            "host mode is the node"
        );
        assert_eq!(p.workloads[4].netns, "insp-lab-batch");
        assert_eq!(p.gateway, Ipv4Addr::new(198, 18, 20, 1));
        assert!(web.host_veth.as_ref().unwrap().len() <= 15);
    }

    #[test]
    fn every_bad_spec_names_its_problem() {
        let base = |extra: &str| format!("name = \"t\"\nsubnet = \"198.18.30.0/24\"\n{extra}");
        for (spec, want) in [
            (
                base("").replace("198.18.30.0/24", "203.0.113.0/24"),
                "outside 198.18.0.0/15",
            ),
            (
                base("").replace("198.18.30.0/24", "198.18.30.0/33"),
                "prefix length",
            ),
            (
                base("").replace("198.18.30.0/24", "198.18.30.7/24"),
                "host bits",
            ),
            (base("").replace("198.18.30.0/24", "banana"), "not a CIDR"),
            (
                base(
                    "[[workload]]\nname = \"a\"\nmode = \"bridge\"\n[[workload]]\nname = \"a\"\nmode = \"none\"\n",
                ),
                "duplicate workload name 'a'",
            ),
            (
                base("[[workload]]\nname = \"a\"\nmode = \"macvlan\"\n"),
                "unknown network mode 'macvlan'",
            ),
            (
                base("[[workload]]\nname = \"a\"\nmode = \"container:b\"\n"),
                "names no other workload",
            ),
            (
                base("[[workload]]\nname = \"a\"\nmode = \"host\"\npublish = [\"80:80\"]\n"),
                "only bridge mode",
            ),
            (
                base("[[workload]]\nname = \"a\"\nmode = \"bridge\"\npublish = [\"x:80\"]\n"),
                "is not a port",
            ),
            (
                base("[[workload]]\nname = \"a\"\nmode = \"bridge\"\naddr = \"198.18.31.2\"\n"),
                "outside the subnet",
            ),
            (
                base(
                    "[[workload]]\nname = \"a\"\nmode = \"container:b\"\n[[workload]]\nname = \"b\"\nmode = \"container:a\"\n",
                ),
                "cycle",
            ),
            (
                base("[[workload]]\nname = \"A\"\nmode = \"bridge\"\n"),
                "must be 1-12 characters",
            ),
            (base("colour = \"red\"\n"), "unknown field"),
            (
                base("[external]\nname = \"e\"\nsubnet = \"198.18.30.0/25\"\n"),
                "overlaps",
            ),
        ] {
            let e = plan(&spec).expect_err(&spec);
            assert!(e.contains(want), "{spec:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
