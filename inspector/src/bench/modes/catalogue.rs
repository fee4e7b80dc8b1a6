//! The modes `bench` runs over, by name: Docker's host, bridge, container and none modes, a
//! published port (bridge + DNAT), and a Service's `ClusterIP` through kube-proxy in iptables
//! or nftables mode at a number of Services.
use crate::bench::BenchError;

/// One network mode of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BenchMode {
    Host,
    Bridge,
    Container,
    None,
    Dnat,
    /// `ClusterIP` through kube-proxy (nftables when true) with this many Services.
    ClusterIp {
        nft: bool,
        services: u32,
    },
}

impl BenchMode {
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::Host => "host".into(),
            Self::Bridge => "bridge".into(),
            Self::Container => "container".into(),
            Self::None => "none".into(),
            Self::Dnat => "bridge-dnat".into(),
            Self::ClusterIp { nft, services } => {
                format!("{}-{services}", if nft { "nftables" } else { "iptables" })
            }
        }
    }

    /// What the mode is, in a few words.
    #[must_use]
    pub fn what(self) -> String {
        match self {
            Self::Host => "client and server in the node's namespace (host networking): lo".into(),
            Self::Bridge => "container to container: veth, bridge, veth".into(),
            Self::Container => "client shares the server's namespace: lo".into(),
            Self::None => "client and server in a namespace with only lo: 127.0.0.1".into(),
            Self::Dnat => {
                "outside client to a published host port: routed veth, DNAT, bridge, veth".into()
            }
            Self::ClusterIp { nft, services } => format!(
                "pod to ClusterIP, kube-proxy {} mode, {services} Services (target last): veth, DNAT, bridge, veth",
                if nft { "nftables" } else { "iptables" }
            ),
        }
    }

    pub(super) fn kube_lab(self) -> Option<(bool, u32)> {
        match self {
            Self::ClusterIp { nft, services } => Some((nft, services)),
            _ => None,
        }
    }
}

/// Parses `--modes` against the Service counts of `--services`.
///
/// # Errors
/// An unknown mode, in one line.
pub fn parse_modes(list: &[String], counts: &[u32]) -> Result<Vec<BenchMode>, BenchError> {
    let mut out = Vec::new();
    for item in list {
        let kube = |nft: bool| {
            counts
                .iter()
                .map(move |&s| BenchMode::ClusterIp { nft, services: s })
        };
        match item.as_str() {
            "all" => {
                out.extend([
                    BenchMode::Host,
                    BenchMode::Bridge,
                    BenchMode::Container,
                    BenchMode::None,
                    BenchMode::Dnat,
                ]);
                out.extend(kube(false));
                out.extend(kube(true));
            }
            "host" => out.push(BenchMode::Host),
            "bridge" => out.push(BenchMode::Bridge),
            "container" => out.push(BenchMode::Container),
            "none" => out.push(BenchMode::None),
            "dnat" | "bridge-dnat" => out.push(BenchMode::Dnat),
            "iptables" => out.extend(kube(false)),
            "nftables" => out.extend(kube(true)),
            "clusterip" => {
                out.extend(kube(false));
                out.extend(kube(true));
            }
            other => {
                let parsed = other.split_once('-').and_then(|(m, n)| {
                    let nft = match m {
                        "iptables" => false,
                        "nftables" => true,
                        _ => return None,
                    };
                    let services = n.parse::<u32>().ok()?;
                    Some(BenchMode::ClusterIp { nft, services })
                });
                match parsed {
                    Some(m @ BenchMode::ClusterIp { services, .. })
                        if (1..=MAX_SERVICES).contains(&services) =>
                    {
                        out.push(m);
                    }
                    _ => {
                        return Err(BenchError::Input(format!(
                            "unknown mode '{other}': use host, bridge, container, none, dnat, iptables, nftables, iptables-N, nftables-N (N Services, 1..{MAX_SERVICES}), clusterip or all"
                        )));
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|m| seen.insert(*m));
    if out.is_empty() {
        return Err(BenchError::Input("--modes names no mode".into()));
    }
    Ok(out)
}

/// `modes` with each mode kept once, where it first came.
pub(super) fn first_of_each<T: PartialEq + Copy>(modes: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(modes.len());
    for m in modes {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Most Services a `ClusterIP` mode may program (the lab's limit plus the target).
pub const MAX_SERVICES: u32 = 30_001;
