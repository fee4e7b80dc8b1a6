//! Planning: a spec validated and every name and address computed (namespaces, veth names,
//! addresses, published ports, the external client), before anything is created.
use std::{collections::HashSet, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::{
    LabError,
    spec::{KubeProxy, LabSpec, WorkloadSpec},
};
use crate::net::{Cidr, CidrError};

/// A network mode as the lab builds it (Docker's four).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    Bridge,
    Host,
    None,
    Container(String),
}

impl NetworkMode {
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
    pub mode: NetworkMode,
    /// The namespace it lives in (its own, the node's, or its target's).
    pub netns: String,
    /// Bridge mode: its address, and its veth's name on the node.
    pub addr: Option<Ipv4Addr>,
    pub host_veth: Option<String>,
    pub publish: Vec<Publish>,
}

/// A namespace outside the node, routed to it.
#[derive(Clone, Debug)]
pub struct PlannedExternal {
    pub netns: String,
    /// The node's end of the link.
    pub node_if: String,
    pub node_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub prefix: u8,
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
    pub external: Option<PlannedExternal>,
    pub docker_rules: bool,
    pub kube_proxy: Option<KubeProxy>,
    pub service_cidr: (Ipv4Addr, u8),
    /// Generated ones first, then the spec's (the spec's are last in iptables order).
    pub services: Vec<crate::services::rules::Service>,
}

impl Plan {
    /// A workload by name.
    pub fn workload(&self, name: &str) -> Result<&PlannedWorkload, LabError> {
        self.workloads
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| LabError::NoWorkload {
                lab: self.name.clone(),
                name: name.to_owned(),
                have: self
                    .workloads
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

pub(super) fn spec_err(m: impl Into<String>) -> LabError {
    LabError::Spec(m.into())
}

/// Parses "198.18.20.0/24": a network address, inside 198.18.0.0/15.
pub(super) fn subnet(s: &str, what: &str) -> Result<(Ipv4Addr, u8), LabError> {
    let (a, p) = Cidr::parse_v4_network(s, 8..=30).map_err(|e| {
        spec_err(match e {
            CidrError::Prefix(..) => format!("{what} '{s}': the prefix length must be 8..30"),
            CidrError::HostBits(_) => format!("{what} '{s}' has host bits set"),
            CidrError::NotV4(_) => format!("{what} '{s}' is not an IPv4 CIDR"),
            CidrError::Syntax(_) | CidrError::NoPrefix(_) => {
                format!("{what} '{s}' is not a CIDR (a.b.c.d/len)")
            }
        })
    })?;
    if !crate::net::in_benchmark_range(a.into()) {
        return Err(spec_err(format!(
            "{what} '{s}' is outside 198.18.0.0/15, the only range labs may use"
        )));
    }
    Ok((a, p))
}

/// The `n`th address of a network that is not its network or broadcast address.
pub(super) fn nth(net: (Ipv4Addr, u8), n: u32) -> Result<Ipv4Addr, LabError> {
    let c = Cidr::v4(net.0, net.1);
    match c.nth_v4(n) {
        Some(a) if n > 0 && u64::from(n) < c.size() - 1 => Ok(a),
        _ => Err(spec_err(format!(
            "subnet {}/{} has no room for another address",
            net.0, net.1
        ))),
    }
}

fn publish(s: &str) -> Result<Publish, LabError> {
    let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if proto != "tcp" && proto != "udp" {
        return Err(spec_err(format!(
            "published port '{s}': protocol must be tcp or udp"
        )));
    }
    let (h, c) = ports.split_once(':').ok_or_else(|| {
        spec_err(format!(
            "published port '{s}' must be HOSTPORT:PORT[/proto]"
        ))
    })?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| spec_err(format!("published port '{s}': '{p}' is not a port")))
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

/// A lab, workload or external name: 1-12 characters of a-z, 0-9 and '-'.
fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 12
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn mode_of(w: &WorkloadSpec, names: &HashSet<&str>) -> Result<NetworkMode, LabError> {
    Ok(match w.mode.as_str() {
        "bridge" => NetworkMode::Bridge,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        m => match m.strip_prefix("container:") {
            Some(t) if names.contains(t) && t != w.name => NetworkMode::Container(t.into()),
            Some(t) => {
                return Err(spec_err(format!(
                    "workload '{}': mode container:{t} names no other workload of the lab",
                    w.name
                )));
            }
            None => {
                return Err(spec_err(format!(
                    "workload '{}': unknown network mode '{m}' (bridge, host, none, container:<workload>)",
                    w.name
                )));
            }
        },
    })
}

/// Hands out the subnet's addresses: the gateway first, then each bridge workload its own.
struct Addresses {
    net: (Ipv4Addr, u8),
    used: HashSet<Ipv4Addr>,
    next: u32,
}

impl Addresses {
    fn take(&mut self, w: &WorkloadSpec, subnet_text: &str) -> Result<Ipv4Addr, LabError> {
        let a = match &w.addr {
            Some(a) => {
                let ip: Ipv4Addr = a.parse().map_err(|_| {
                    spec_err(format!("workload '{}': addr '{a}' is not IPv4", w.name))
                })?;
                if !Cidr::v4(self.net.0, self.net.1).contains(ip.into()) {
                    return Err(spec_err(format!(
                        "workload '{}': addr {ip} is outside the subnet {subnet_text}",
                        w.name
                    )));
                }
                ip
            }
            None => loop {
                let a = nth(self.net, self.next)?;
                self.next += 1;
                if !self.used.contains(&a) {
                    break a;
                }
            },
        };
        if !self.used.insert(a) {
            return Err(spec_err(format!(
                "workload '{}': address {a} is taken",
                w.name
            )));
        }
        Ok(a)
    }
}

impl LabSpec {
    /// Validates the spec and computes every name and address.
    ///
    /// # Errors
    /// The first problem, in one line.
    pub fn plan(&self) -> Result<Plan, LabError> {
        if !name_ok(&self.name) {
            return Err(spec_err(format!(
                "lab name '{}' must be 1-12 characters of a-z, 0-9 and '-'",
                self.name
            )));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 {
            return Err(spec_err(format!(
                "bridge name '{}' must be 1-15 characters",
                self.bridge
            )));
        }
        let net = subnet(&self.subnet, "subnet")?;
        let gateway = nth(net, 1)?;
        let mut names = HashSet::new();
        for w in &self.workloads {
            if !name_ok(&w.name) {
                return Err(spec_err(format!(
                    "workload name '{}' must be 1-12 characters of a-z, 0-9 and '-'",
                    w.name
                )));
            }
            if !names.insert(w.name.as_str()) {
                return Err(spec_err(format!("duplicate workload name '{}'", w.name)));
            }
        }
        let node_ns = crate::identity::lab_records::node_ns(&self.name);
        let workloads = self.plan_workloads(net, gateway, &names, &node_ns)?;
        let external = self.plan_external(net, &names)?;
        let (kube_proxy, service_cidr, services) = self.plan_services(&workloads, net)?;
        Ok(Plan {
            name: self.name.clone(),
            node_ns,
            bridge: self.bridge.clone(),
            subnet: net,
            gateway,
            workloads,
            external,
            docker_rules: self.docker_rules,
            kube_proxy,
            service_cidr,
            services,
        })
    }

    fn plan_workloads(
        &self,
        net: (Ipv4Addr, u8),
        gateway: Ipv4Addr,
        names: &HashSet<&str>,
        node_ns: &str,
    ) -> Result<Vec<PlannedWorkload>, LabError> {
        let mut addrs = Addresses {
            net,
            used: HashSet::from([gateway]),
            next: 2,
        };
        let mut out = Vec::new();
        for w in &self.workloads {
            let mode = mode_of(w, names)?;
            let bridge = mode == NetworkMode::Bridge;
            if !bridge && (!w.publish.is_empty() || w.addr.is_some()) {
                return Err(spec_err(format!(
                    "workload '{}': only bridge mode has an address or published ports (as in Docker)",
                    w.name
                )));
            }
            out.push(PlannedWorkload {
                name: w.name.clone(),
                netns: String::new(),
                host_veth: bridge
                    .then(|| format!("veth{}", hex7(&format!("{}/{}", self.name, w.name)))),
                addr: if bridge {
                    Some(addrs.take(w, &self.subnet)?)
                } else {
                    None
                },
                publish: w
                    .publish
                    .iter()
                    .map(|p| publish(p))
                    .collect::<Result<Vec<_>, _>>()?,
                mode,
            });
        }
        let mut ports = HashSet::new();
        for p in out.iter().flat_map(|w| &w.publish) {
            if !ports.insert((p.proto.clone(), p.host_port)) {
                return Err(spec_err(format!(
                    "host port {}/{} is published twice",
                    p.host_port, p.proto
                )));
            }
        }
        // Namespaces: own for bridge/none, the node's for host, the target's for container.
        for i in 0..out.len() {
            let mut seen = HashSet::new();
            let mut cur = i;
            let ns = loop {
                if !seen.insert(cur) {
                    return Err(spec_err(format!(
                        "workload '{}': container modes form a cycle",
                        out[i].name
                    )));
                }
                match &out[cur].mode {
                    NetworkMode::Bridge | NetworkMode::None => {
                        break format!("{}-{}", self.name, out[cur].name);
                    }
                    NetworkMode::Host => break node_ns.to_owned(),
                    NetworkMode::Container(t) => {
                        cur = out.iter().position(|w| &w.name == t).unwrap_or(cur);
                    }
                }
            };
            out[i].netns = ns;
        }
        Ok(out)
    }

    fn plan_external(
        &self,
        net: (Ipv4Addr, u8),
        names: &HashSet<&str>,
    ) -> Result<Option<PlannedExternal>, LabError> {
        let Some(e) = &self.external else {
            return Ok(None);
        };
        if !name_ok(&e.name) || names.contains(e.name.as_str()) {
            return Err(spec_err(format!(
                "external name '{}' must be 1-12 characters of a-z, 0-9, '-' and not a workload's",
                e.name
            )));
        }
        let en = subnet(&e.subnet, "external subnet")?;
        if Cidr::v4(net.0, net.1).overlaps(&Cidr::v4(en.0, en.1)) {
            return Err(spec_err(format!(
                "external subnet {} overlaps the bridge subnet {}",
                e.subnet, self.subnet
            )));
        }
        Ok(Some(PlannedExternal {
            netns: format!("{}-{}", self.name, e.name),
            node_if: format!("ext{}", hex7(&e.name)),
            node_ip: nth(en, 1)?,
            ip: nth(en, 2)?,
            prefix: en.1,
        }))
    }
}
