//! The rules kube-proxy writes for a set of Services, in its own structure: chain names from
//! its hashes, its comments, its rule order, its masquerade mark (0x4000), probabilities
//! formatted `%0.10f`, `recent` affinity lists / nft affinity sets, REJECT for services
//! without endpoints, as kube-proxy's `pkg/proxy/iptables` and `pkg/proxy/nftables` proxiers
//! write them (docs/services.md shows them on the lab).
//! `iptables` writes `iptables-restore` input (built-in chains' jumps inserted first),
//! `nftables` an `nft -f` script for the table `ip kube-proxy`; this file holds what both
//! share.
use std::net::Ipv4Addr;

mod iptables;
pub mod ipvs;
mod nftables;

pub use iptables::iptables;
pub use nftables::nftables;

/// One port of a Service.
#[derive(Clone, Debug)]
pub struct Port {
    /// Empty for an unnamed port.
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    pub node_port: Option<u16>,
}

/// A Service with its ready endpoints (pod addresses).
#[derive(Clone, Debug)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<Port>,
    /// `ClientIP` affinity timeout in seconds (None: no affinity).
    pub affinity: Option<u32>,
    pub endpoints: Vec<Ipv4Addr>,
}

/// Node-wide settings kube-proxy takes from its flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--cluster-cidr` (local-traffic detector): `ClusterIP` traffic from outside it is
    /// masqueraded. None: no such rule.
    pub cluster_cidr: Option<String>,
    /// The `ServiceCIDR` (nftables mode drops traffic to unallocated `ClusterIPs` in it).
    pub service_cidr: Option<String>,
}

/// Above this many endpoints in total, kube-proxy leaves out the per-endpoint comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

fn quote(c: &str) -> String {
    format!("\"{c}\"")
}

/// kube-proxy's probability string for rule `i` of `n`.
fn probability(i: usize, n: usize) -> String {
    #[expect(clippy::cast_precision_loss, reason = "endpoint counts are small")]
    let p = 1.0 / (n - i) as f64;
    format!("{p:0.10}")
}

/// `count` generated Services named `scale/svc-N`, tcp port 80, `ClusterIPs` from
/// `vip_base` and `per` endpoints each from `ep_base` (nothing listens there: they exist to
/// make the rule set as large as a big cluster's).
#[must_use]
pub fn generated(count: usize, per: usize, vip_base: Ipv4Addr, ep_base: Ipv4Addr) -> Vec<Service> {
    (0..count)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(vip_base) + u32::try_from(i).unwrap_or(0));
            Service {
                namespace: "scale".into(),
                name: format!("svc-{i}"),
                cluster_ip: vip,
                ports: vec![Port {
                    name: "http".into(),
                    port: 80,
                    target_port: 8080,
                    protocol: "tcp".into(),
                    node_port: None,
                }],
                affinity: None,
                // Endpoints cycle through a /17 from `ep_base` (Services may share pods).
                endpoints: (0..per)
                    .map(|j| {
                        Ipv4Addr::from(
                            u32::from(ep_base) + u32::try_from((i * per + j) % 32_768).unwrap_or(0),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}
