//! Workload selectors: `--pod NS/NAME`, `--container NAME|ID`, `-l key=value[,...]`,
//! `--namespace NS`, `--from-pod`/`--to-pod`, `--from-container`/`--to-container`. Parsed
//! once; resolved against the identity on every rescan into the namespaces and addresses
//! the kernel's event filter reads (`inspector_common::wsel`), so workloads that come later
//! are followed, and ones that leave are let go.
//!
//! What is selected: with `--pod`, `--container`, `-l`, `--namespace`, every packet seen
//! in a selected workload's namespace, and every packet from or to one of its addresses
//! wherever it is seen (the host's veth and bridge, the peer's namespace); with `--from-*`
//! the source must be a selected workload's address, with `--to-*` the destination. Kinds
//! given together must all hold. Repeated `--pod`/`--container` (and repeated `-l`, and
//! `--namespace`) widen; `-l` and `--namespace` narrow `--pod`/`--container` when given
//! with them. A host-mode workload has neither a namespace nor addresses of its own: it
//! cannot be selected (said once, as a note).
use std::collections::{HashMap, HashSet};

use inspector_common::{
    FlowKey,
    parse::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
    wsel::{ANY, FROM, TO, pass},
};

use super::{Identity, Kind, Workload};

/// A workload named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// A pod, "namespace/name".
    Pod(String),
    /// A container: its name, its id, or a prefix of its id (4 characters or more); a pod's
    /// container selects its pod (they share its namespace).
    Container(String),
}

/// Every selector given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub either: Vec<Pick>,
    pub labels: Vec<Vec<(String, String)>>,
    pub namespaces: Vec<String>,
    pub from: Vec<Pick>,
    pub to: Vec<Pick>,
}

/// A selector that makes no sense; the message says what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("bad pod '{0}': use NAMESPACE/NAME")]
    Pod(String),
    #[error("bad container '{0}': use a container's name or id (4+ characters of it)")]
    Container(String),
    #[error("bad label selector '{0}': use key=value[,key=value...]")]
    Label(String),
    #[error("bad Kubernetes namespace '{0}': use a DNS label such as kube-system")]
    Namespace(String),
}

/// A Kubernetes name part: a DNS label (subdomain for pod names).
fn dns(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
}

/// `--pod NS/NAME`.
pub fn parse_pod(s: &str) -> Result<Pick, SelectError> {
    match s.split_once('/') {
        Some((ns, name)) if dns(ns, false) && dns(name, true) => Ok(Pick::Pod(s.to_owned())),
        _ => Err(SelectError::Pod(s.to_owned())),
    }
}

/// `--container NAME|ID`.
pub fn parse_container(s: &str) -> Result<Pick, SelectError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(Pick::Container(s.to_owned()))
    } else {
        Err(SelectError::Container(s.to_owned()))
    }
}

/// `-l key=value[,key=value]`.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, SelectError> {
    let err = || SelectError::Label(s.to_owned());
    s.split(',')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                Ok((k.to_owned(), v.to_owned()))
            }
            _ => Err(err()),
        })
        .collect()
}

/// `--namespace NS`.
pub fn parse_namespace(s: &str) -> Result<String, SelectError> {
    if dns(s, false) && s.len() <= 63 {
        Ok(s.to_owned())
    } else {
        Err(SelectError::Namespace(s.to_owned()))
    }
}

/// A pod's Kubernetes namespace.
fn pod_namespace(w: &Workload) -> Option<&str> {
    (w.kind == Some(Kind::Pod))
        .then(|| w.name.split_once('/').map(|(ns, _)| ns))
        .flatten()
}

impl Pick {
    /// The live workload this names (a pod's container: its pod), if one does now.
    #[must_use]
    pub fn find<'a>(&self, identity: &'a Identity) -> Option<&'a Workload> {
        identity.live().iter().find(|w| self.picks(w))
    }

    /// As the user gave it.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Pod(n) | Self::Container(n) => n,
        }
    }

    fn picks(&self, w: &Workload) -> bool {
        match self {
            Self::Pod(name) => w.kind == Some(Kind::Pod) && &w.name == name,
            Self::Container(key) => {
                let id = |id: &str| id == key || (key.len() >= 4 && id.starts_with(key.as_str()));
                let own = w.kind != Some(Kind::Pod) && (&w.name == key || id(&w.id));
                let member = w.kind == Some(Kind::Pod)
                    && (w.containers.iter().any(|c| c == key)
                        || w.member_ids.iter().any(|m| id(m)));
                own || member
            }
        }
    }
}

impl Selectors {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.mode() == 0
    }

    /// The kinds of selector given (`wsel` bits).
    #[must_use]
    pub fn mode(&self) -> u8 {
        let mut m = 0;
        if !self.either.is_empty() || !self.labels.is_empty() || !self.namespaces.is_empty() {
            m |= ANY;
        }
        if !self.from.is_empty() {
            m |= FROM;
        }
        if !self.to.is_empty() {
            m |= TO;
        }
        m
    }

    /// Whether `w` is selected by `--pod`/`--container`/`-l`/`--namespace`.
    fn either(&self, w: &Workload) -> bool {
        let named = self.either.is_empty() || self.either.iter().any(|p| p.picks(w));
        let labeled = self.labels.is_empty()
            || self
                .labels
                .iter()
                .any(|set| set.iter().all(|(k, v)| w.labels.get(k) == Some(v)));
        let spaced = self.namespaces.is_empty()
            || pod_namespace(w).is_some_and(|ns| self.namespaces.iter().any(|n| n == ns));
        self.mode() & ANY != 0 && named && labeled && spaced
    }

    /// The bits of a workload.
    fn bits(&self, w: &Workload) -> u8 {
        let mut b = 0;
        if self.either(w) {
            b |= ANY;
        }
        if self.from.iter().any(|p| p.picks(w)) {
            b |= FROM;
        }
        if self.to.iter().any(|p| p.picks(w)) {
            b |= TO;
        }
        b
    }

    /// The selection now: every namespace in `known` is placed (with the bits of the
    /// workloads in it, or 0), and every address in `addrs` and of every live workload
    /// (with the bits of its workloads, or 0). `waiting`: a new namespace waits for its
    /// owner; until then a packet with an address not placed is left undecided.
    #[must_use]
    pub fn resolve(
        &self,
        identity: &Identity,
        known: &HashSet<u64>,
        addrs: impl IntoIterator<Item = std::net::IpAddr>,
        waiting: bool,
    ) -> Resolved {
        let mut r = Resolved {
            mode: self.mode(),
            waiting,
            ..Resolved::default()
        };
        for &ns in known {
            r.netns.insert(ns, 0);
        }
        for a in addrs {
            r.addrs.insert(addr_key(a), 0);
        }
        for (i, w) in identity.workloads.iter().enumerate() {
            let live = i < identity.live().len();
            let b = self.bits(w);
            if live {
                for ip in &w.ips {
                    r.addrs.entry(addr_key(*ip)).or_insert(0);
                }
            }
            if b == 0 {
                continue;
            }
            if w.is_host_mode() {
                r.host_mode.push(w.name.clone());
                continue;
            }
            // A namespace is wanted for --pod/--container/-l only (from/to are addresses);
            // a departed workload's only while no live one holds it (inodes are reused).
            if let Some(ns) = w.netns
                && b & ANY != 0
                && (live || identity.live().iter().all(|l| l.netns != Some(ns)))
            {
                *r.netns.entry(ns).or_insert(0) |= ANY;
            }
            if live {
                for ip in &w.ips {
                    *r.addrs.entry(addr_key(*ip)).or_insert(0) |= b;
                }
                r.names.push(w.name.clone());
            }
        }
        r.names.sort();
        r.names.dedup();
        r
    }
}

/// An address as the kernel's flow key holds it (IPv4 in the first 4 bytes).
#[must_use]
pub fn addr_key(ip: std::net::IpAddr) -> [u8; 16] {
    let mut k = [0u8; 16];
    match ip {
        std::net::IpAddr::V4(a) => k[..4].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => k = a.octets(),
    }
    k
}

/// The selection as resolved at one rescan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub mode: u8,
    /// Namespace inode -> bits, for every namespace placed.
    pub netns: HashMap<u64, u8>,
    /// Address (as [`addr_key`]) -> bits.
    pub addrs: HashMap<[u8; 16], u8>,
    /// A new namespace waits for its owner (see [`Resolved::verdict`]).
    pub waiting: bool,
    /// The live workloads selected, by name.
    pub names: Vec<String>,
    /// Selected workloads in host mode (not selectable).
    pub host_mode: Vec<String>,
}

impl Resolved {
    /// Whether a packet or flow of `key` is selected (the kernel's rule); `None` when its
    /// namespace is not placed yet (it appeared since the last rescan), or while a new
    /// namespace waits for its owner and an address of the packet is not placed (it may
    /// be the new workload's).
    #[must_use]
    pub fn verdict(&self, key: &FlowKey) -> Option<bool> {
        let addr = |a: &[u8; 16]| {
            (matches!(key.ethertype, ETH_P_IP | ETH_P_IPV6 | ETH_P_ARP) && *a != [0; 16])
                .then_some(*a)
        };
        self.decide(u64::from(key.netns), addr(&key.src), addr(&key.dst))
    }

    /// The same for a record already decoded (the agent's per-query selectors).
    #[must_use]
    pub fn verdict_at(
        &self,
        netns: u64,
        src: Option<std::net::IpAddr>,
        dst: Option<std::net::IpAddr>,
    ) -> Option<bool> {
        self.decide(netns, src.map(addr_key), dst.map(addr_key))
    }

    fn decide(&self, netns: u64, src: Option<[u8; 16]>, dst: Option<[u8; 16]>) -> Option<bool> {
        let ns = *self.netns.get(&netns)?;
        let addr = |a: Option<[u8; 16]>| match a {
            Some(a) => self.addrs.get(&a).copied(),
            None => Some(0),
        };
        let (src, dst) = (addr(src), addr(dst));
        if self.waiting && (src.is_none() || dst.is_none()) {
            return None;
        }
        Some(pass(self.mode, ns, src.unwrap_or(0), dst.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ns: u64, ip: &str, labels: &[(&str, &str)]) -> Workload {
        Workload {
            name: name.into(),
            id: format!("{name}-id-0123456789"),
            kind: Some(Kind::Pod),
            netns: Some(ns),
            ips: vec![ip.parse().unwrap()],
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            containers: vec!["app".into()],
            ..Workload::default()
        }
    }

    fn key(netns: u32, src: &str, dst: &str) -> FlowKey {
        let mut k = FlowKey::zeroed();
        k.netns = netns;
        k.ethertype = ETH_P_IP;
        k.src = addr_key(src.parse().unwrap());
        k.dst = addr_key(dst.parse().unwrap());
        k
    }

    #[test]
    fn selectors_resolve_to_namespaces_and_addresses() {
        let id = Identity::new(vec![
            pod("shop/web", 10, "198.18.1.2", &[("app", "web")]),
            pod("shop/db", 11, "198.18.1.3", &[("app", "db")]),
            pod("other/web", 12, "198.18.1.4", &[("app", "web")]),
        ]);
        let known: HashSet<u64> = [1, 10, 11, 12].into();
        let sel = Selectors {
            labels: vec![parse_labels("app=web").unwrap()],
            namespaces: vec!["shop".into()],
            ..Selectors::default()
        };
        let r = sel.resolve(&id, &known, [], false);
        assert_eq!(r.names, ["shop/web"]);
        assert_eq!(r.verdict(&key(10, "198.18.1.2", "198.18.9.9")), Some(true));
        // The host's veth: by address.
        assert_eq!(r.verdict(&key(1, "198.18.9.9", "198.18.1.2")), Some(true));
        assert_eq!(r.verdict(&key(1, "198.18.1.3", "198.18.1.4")), Some(false));
        assert_eq!(r.verdict(&key(99, "198.18.1.2", "198.18.1.4")), None);

        let sel = Selectors {
            from: vec![parse_container("app").unwrap()],
            to: vec![parse_pod("shop/db").unwrap()],
            ..Selectors::default()
        };
        let r = sel.resolve(&id, &known, [], false);
        assert_eq!(r.verdict(&key(1, "198.18.1.2", "198.18.1.3")), Some(true));
        assert_eq!(r.verdict(&key(1, "198.18.1.3", "198.18.1.2")), Some(false));
        // While a new namespace waits for its owner, an address nobody holds is undecided.
        let r = sel.resolve(&id, &known, ["198.18.0.1".parse().unwrap()], true);
        assert_eq!(r.verdict(&key(1, "198.18.1.2", "198.18.1.9")), None);
        assert_eq!(r.verdict(&key(1, "198.18.1.2", "198.18.0.1")), Some(false));
    }

    #[test]
    fn bad_selectors_are_named() {
        assert!(parse_pod("web").is_err());
        assert!(parse_pod("Shop/web").is_err());
        assert!(parse_labels("app").is_err());
        assert!(parse_labels("=x").is_err());
        assert!(parse_container("a b").is_err());
        assert!(parse_namespace("a/b").is_err());
        assert_eq!(parse_labels("a=1,b=").unwrap().len(), 2);
    }
}
