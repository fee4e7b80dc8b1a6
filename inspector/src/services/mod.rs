//! Kubernetes Services as kube-proxy programs them: the service table read back from a
//! node's live rules (iptables-save of the nat/filter tables, or the nftables table
//! `ip kube-proxy` as JSON), the rules kube-proxy would write for a given state (the lab uses
//! them), and the NAT decisions conntrack recorded for each connection.
//!
//! Chain names follow kube-proxy's hashing (see `hash`), so a chain seen in a dump or a
//! counter can be traced back to its service and endpoint even when comments are absent.
pub mod attrib;
pub mod conntrack;
pub mod counters;
pub mod iptables;
pub mod ipvs;
mod ipvs_entries;
pub mod nft;
pub mod read;
pub mod rules;
pub mod stamp;

use std::{collections::HashMap, net::Ipv4Addr};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// What can stop reading a node's Services; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("running {program} (installed by `cargo xtask setup`): {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("not nft JSON output: {0}")]
    NftJson(String),
    #[error("no lab called '{0}' is up (see `inspector lab status`)")]
    NoLab(String),
}

/// `base32.StdEncoding(sha256(s))` - kube-proxy's chain-name hash before truncation.
#[must_use]
pub fn hash32(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(56);
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in digest {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The service-port name string: `ns/name:port` or `ns/name` for an unnamed port.
#[must_use]
pub fn spn(namespace: &str, name: &str, port_name: &str) -> String {
    if port_name.is_empty() {
        format!("{namespace}/{name}")
    } else {
        format!("{namespace}/{name}:{port_name}")
    }
}

/// Splits a service-port name string back into (namespace, name, port name).
#[must_use]
pub fn split_spn(s: &str) -> (String, String, String) {
    let (ns, rest) = s.split_once('/').unwrap_or(("", s));
    let (name, port) = rest.split_once(':').unwrap_or((rest, ""));
    (ns.into(), name.into(), port.into())
}

/// iptables-mode per-service-port chain suffix: 16 chars of the hash of `spn + proto`.
#[must_use]
pub fn port_proto_hash(spn: &str, proto: &str) -> String {
    hash32(&format!("{spn}{proto}"))[..16].to_owned()
}

/// iptables-mode endpoint chain: `KUBE-SEP-` + 16 chars of the hash of `spn + proto + ip:port`.
#[must_use]
pub fn sep_chain(spn: &str, proto: &str, ep: &str) -> String {
    format!("KUBE-SEP-{}", &hash32(&format!("{spn}{proto}{ep}"))[..16])
}

/// nftables-mode chain base: 8 chars of the hash, `-`, the name (cut at 240 chars).
#[must_use]
pub fn hash_and_truncate(name: &str) -> String {
    let h = &hash32(name)[..8];
    let full = format!("{h}-{name}");
    if full.len() > 240 {
        format!("{}...", &full[..237])
    } else {
        full
    }
}

/// nftables-mode service base: `<ns>/<svc>/<proto>/<portName>`, hashed.
#[must_use]
pub fn nft_service_base(namespace: &str, name: &str, proto: &str, port_name: &str) -> String {
    hash_and_truncate(&format!("{namespace}/{name}/{proto}/{port_name}"))
}

/// nftables-mode endpoint base: the service's name, `__ip/port`, hashed.
#[must_use]
pub fn nft_endpoint_base(
    namespace: &str,
    name: &str,
    proto: &str,
    port_name: &str,
    ip: Ipv4Addr,
    port: u16,
) -> String {
    hash_and_truncate(&format!(
        "{namespace}/{name}/{proto}/{port_name}__{ip}/{port}"
    ))
}

/// One endpoint of a service port as the rules have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// `ip:port` the rule DNATs to.
    pub endpoint: String,
    /// The chain that DNATs to it (`KUBE-SEP-...` or `endpoint-...`).
    pub chain: String,
    /// iptables mode: the probability of the rule that jumps to it (as dumped); nftables mode:
    /// the numgen slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<String>,
}

/// One service port: a frontend (ClusterIP:port, and `NodePort` if any) and its endpoints.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// `ip:port` of every endpoint, in rule order.
    pub endpoints: Vec<String>,
    /// The service chain (`KUBE-SVC-...`/`KUBE-SVL-...`, or `service-...`/`local-...`).
    pub chain: String,
    /// Per endpoint: its chain (and probability).
    pub backends: Vec<Backend>,
    /// `ClientIP` session affinity rules present.
    pub affinity: bool,
    /// What happens with no endpoints: "reject" / "drop" (and where), else empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub no_endpoints: String,
    /// `iptables`, `nftables` or `ipvs`.
    pub mode: &'static str,
}

impl ServiceEntry {
    /// `ns/name:port` (or `ns/name`).
    #[must_use]
    pub fn spn(&self) -> String {
        spn(&self.namespace, &self.name, &self.port_name)
    }

    /// `ns/name` - what `--service` matches.
    #[must_use]
    pub fn ns_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The backend whose endpoint is `ip:port`.
    #[must_use]
    pub fn backend(&self, ep: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.endpoint == ep)
    }
}

/// IP protocol number of a Service port's protocol name (the index key: lookups happen per
/// packet and must not allocate).
fn proto_number(p: &str) -> u8 {
    match p {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        _ => 0,
    }
}

/// A node's services, indexed by frontend.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServiceTable {
    pub services: Vec<ServiceEntry>,
    #[serde(skip)]
    by_vip: HashMap<(Ipv4Addr, u8, u16), usize>,
    #[serde(skip)]
    by_nodeport: HashMap<(u8, u16), usize>,
}

impl ServiceTable {
    #[must_use]
    pub fn new(mut services: Vec<ServiceEntry>) -> Self {
        services.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.port_name, a.mode).cmp(&(
                &b.namespace,
                &b.name,
                &b.port_name,
                b.mode,
            ))
        });
        let mut t = Self {
            services,
            ..Self::default()
        };
        for (i, s) in t.services.iter().enumerate() {
            let p = proto_number(&s.protocol);
            if let Some(ip) = s.cluster_ip {
                t.by_vip.insert((ip, p, s.port), i);
            }
            if let Some(np) = s.node_port {
                t.by_nodeport.insert((p, np), i);
            }
        }
        t
    }

    /// Merges two tables (e.g. iptables and nftables rules on one node).
    #[must_use]
    pub fn merged(self, other: Self) -> Self {
        let mut v = self.services;
        v.extend(other.services);
        Self::new(v)
    }

    /// The service whose `ClusterIP` frontend is `ip:port/proto`.
    #[must_use]
    pub fn by_cluster_ip(&self, ip: Ipv4Addr, proto: &str, port: u16) -> Option<&ServiceEntry> {
        self.by_vip
            .get(&(ip, proto_number(proto), port))
            .map(|i| &self.services[*i])
    }

    /// The service whose `NodePort` is `port/proto`.
    #[must_use]
    pub fn by_node_port(&self, proto: &str, port: u16) -> Option<&ServiceEntry> {
        self.by_nodeport
            .get(&(proto_number(proto), port))
            .map(|i| &self.services[*i])
    }

    /// Frontend lookup: a ClusterIP:port, else a `NodePort` when `local` says the address is
    /// one of the node's own.
    #[must_use]
    pub fn frontend(
        &self,
        ip: Ipv4Addr,
        proto: &str,
        port: u16,
        local: impl Fn(Ipv4Addr) -> bool,
    ) -> Option<&ServiceEntry> {
        self.by_cluster_ip(ip, proto, port)
            .or_else(|| local(ip).then(|| self.by_node_port(proto, port)).flatten())
    }

    /// Entries of `ns/name` (every port).
    pub fn named<'a>(&'a self, ns_name: &'a str) -> impl Iterator<Item = &'a ServiceEntry> {
        self.services.iter().filter(move |s| s.ns_name() == ns_name)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_upstream_fixtures() {
        // Names from kube-proxy's own test fixtures (iptables and nftables `proxier_test.go`).
        assert_eq!(
            format!("KUBE-SVC-{}", port_proto_hash("ns1/svc1:p80", "tcp")),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(port_proto_hash("ns2/svc2:p80", "tcp"), "GNZBNJ2PO5MGZ6GT");
        assert_eq!(port_proto_hash("ns5/svc5:p80", "tcp"), "NUKIZ6OKUXPJNT4C");
        assert_eq!(port_proto_hash("ns1/svc1", "tcp"), "AQI2S6QIMU7PVVRP");
        assert_eq!(
            sep_chain("ns1/svc1", "tcp", "10.0.1.1:80"),
            "KUBE-SEP-3JOIVZTXZZRGORX4"
        );
        assert_eq!(
            &nft_service_base("ns2", "svc2", "tcp", "p80")[..8],
            "42NFTM6N"
        );
        assert_eq!(
            &nft_endpoint_base(
                "ns2",
                "svc2",
                "tcp",
                "p80",
                Ipv4Addr::new(10, 180, 0, 2),
                80
            )[..8],
            "SGOXE6O3"
        );
        assert_eq!(
            nft_service_base("ns2", "svc2", "tcp", "p80"),
            "42NFTM6N-ns2/svc2/tcp/p80"
        );
    }

    #[test]
    fn spn_round_trips() {
        assert_eq!(spn("a", "b", ""), "a/b");
        assert_eq!(split_spn("a/b:c"), ("a".into(), "b".into(), "c".into()));
        assert_eq!(split_spn("a/b"), ("a".into(), "b".into(), String::new()));
    }
}
