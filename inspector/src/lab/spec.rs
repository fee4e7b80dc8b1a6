//! A lab's spec: a TOML file (or one of the embedded ones in `specs/`) naming the
//! workloads, each in one of Docker's network modes, the bridge subnet, published ports, an
//! optional external client, and (for a Kubernetes node) Services behind kube-proxy's rules.
//! [`LabSpec::plan`] (see `plan`) validates it and computes every name and address before
//! anything is created, so a bad spec changes nothing.
use serde::{Deserialize, Serialize};

use super::LabError;

/// The embedded default: one workload per mode, a published port and an outside client.
pub const DEFAULT_SPEC: &str = include_str!("specs/default.toml");

/// The embedded Kubernetes-node spec: three "pods" behind Services (one with a `NodePort`,
/// one with `ClientIP` affinity, one without endpoints), a client pod, an outside client, and
/// kube-proxy's rules in iptables mode (`lab up --kube --kube-proxy nftables` switches it).
pub const KUBE_SPEC: &str = include_str!("specs/kube.toml");

/// The bench's Docker-style lab (host, bridge, container, none, published ports).
pub const BENCH_MODES_SPEC: &str = include_str!("specs/bench-modes.toml");

/// The bench's Kubernetes node (a `ClusterIP` through kube-proxy at N Services).
pub const BENCH_KUBE_SPEC: &str = include_str!("specs/bench-kube.toml");

/// The overhead bench's lab: a client and a server on one bridge.
pub const BENCH_OVERHEAD_SPEC: &str = include_str!("specs/bench-overhead.toml");

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
    /// Virtual servers in the kernel's IPVS, the `ClusterIPs` on `kube-ipvs0`, ipsets and a
    /// few iptables rules (needs a kernel with `IP_VS`).
    Ipvs,
}

impl KubeProxy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
            Self::Ipvs => "ipvs",
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

impl LabSpec {
    /// Parses TOML.
    ///
    /// # Errors
    /// Syntax errors and unknown fields, with toml's message, in one line.
    pub fn from_toml(text: &str) -> Result<Self, LabError> {
        toml::from_str(text).map_err(|e| LabError::Spec(e.message().replace('\n', " ")))
    }

    /// Reads and parses a spec file.
    ///
    /// # Errors
    /// The file cannot be read, or is not a spec.
    pub fn from_file(path: &std::path::Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            LabError::Spec(message) => LabError::SpecFile {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// One of the embedded specs (they are valid: a unit test plans each).
    ///
    /// # Panics
    /// Never for the embedded constants (tested).
    #[must_use]
    pub fn embedded(text: &str) -> Self {
        Self::from_toml(text).expect("embedded specs parse (tested)")
    }
}
