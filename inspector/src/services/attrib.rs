//! NAT attribution: which Service a connection was addressed to, which backend the kernel
//! chose, through which chains, and which addresses were rewritten - from the service table
//! (the rules) and the conntrack entry of the connection (what actually happened), in the
//! node namespace where kube-proxy's rules live.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    ServiceEntry, ServiceTable,
    conntrack::{self, Conn},
    read::{self, Node},
    stamp,
};

/// The Service a flow was addressed to (`service` in JSON).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    /// How it was addressed: "`ClusterIP`" or "`NodePort`".
    pub via: &'static str,
    /// The address:port the client used.
    pub frontend: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub protocol: String,
    /// The chain that picked the backend (`KUBE-SVC-...` / `service-...`).
    pub chain: String,
    /// `iptables`, `nftables` or `ipvs`.
    pub mode: &'static str,
    /// The namespace holding the rules and the conntrack entry.
    pub node: String,
}

/// The endpoint the kernel chose (`backend` in JSON).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackendRef {
    /// `ip:port` after DNAT.
    pub endpoint: String,
    /// The chain that DNATs to it (`KUBE-SEP-...` / `endpoint-...`), if the rules have it.
    pub chain: Option<String>,
    /// The workload (pod, container) with that address.
    pub workload: Option<String>,
    /// `ClientIP` affinity pinned it (the service has affinity rules).
    pub affinity: bool,
}

/// The rewrites conntrack recorded (`nat` in JSON).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NatRef {
    /// `client:port -> frontend:port`, as sent.
    pub original: String,
    /// `backend:port -> seen-source:port`, as answered.
    pub reply: String,
    /// `frontend -> backend`.
    pub dnat: Option<String>,
    /// `client -> masqueraded source` when the source was rewritten (KUBE-MARK-MASQ).
    pub snat: Option<String>,
    pub conntrack_id: u32,
}

/// Service, backend and NAT of one connection.
#[derive(Clone, Debug, Serialize)]
pub struct Attribution {
    pub service: ServiceRef,
    pub backend: BackendRef,
    pub nat: NatRef,
    /// The conntrack entry itself (its tuples).
    #[serde(skip)]
    pub conn: Conn,
}

type Key = (u8, IpAddr, u16, IpAddr, u16);

struct NodeView {
    node: Node,
    table: ServiceTable,
    /// Attributed connections, by every tuple a packet of theirs can carry.
    index: HashMap<Key, usize>,
    found: Vec<Attribution>,
}

/// Services of every node namespace, with their conntrack state.
pub struct Services {
    nodes: Vec<NodeView>,
    rules_at: Option<Instant>,
    conntrack_at: Option<Instant>,
    /// The last dump's time, `CLOCK_MONOTONIC` ns (what packet events are stamped with).
    conntrack_ns: u64,
    /// Problems reading rules or conntrack (reported once by the caller).
    pub warnings: Vec<String>,
    /// Each node's change stamp when its rules were last read.
    stamps: HashMap<String, stamp::Stamp>,
    /// How many times a node's rules were dumped and parsed.
    pub dumps: u64,
}

/// How often the rules' change stamps are looked at.
const RULES_EVERY: Duration = Duration::from_secs(1);
/// Conntrack dumps are reused for this long.
const CONNTRACK_EVERY: Duration = Duration::from_millis(100);

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => "",
    }
}

fn ep(ip: IpAddr, port: u16) -> String {
    format!("{ip}:{port}")
}

impl Default for Services {
    fn default() -> Self {
        Self::new()
    }
}

impl Services {
    #[must_use]
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            rules_at: None,
            conntrack_at: None,
            conntrack_ns: 0,
            warnings: Vec::new(),
            stamps: HashMap::new(),
            dumps: 0,
        }
    }

    /// Every Service of every node (for `--service` checks and `path`).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &ServiceEntry)> {
        self.nodes.iter().flat_map(|n| {
            n.table
                .services
                .iter()
                .map(move |s| (n.node.name.as_str(), s))
        })
    }

    /// Looks again at the rules of the host and of lab nodes when due (every second): a
    /// node whose change stamp (`stamp`) is what it was keeps the rules already read; the
    /// others are dumped and parsed again. `force` reads every node.
    pub fn refresh_rules(&mut self, force: bool) {
        if !force && self.rules_at.is_some_and(|t| t.elapsed() < RULES_EVERY) {
            return;
        }
        self.rules_at = Some(Instant::now());
        let mut old: HashMap<String, NodeView> = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(|n| (n.node.name.clone(), n))
            .collect();
        let mut nodes = Vec::new();
        for node in read::nodes() {
            // Taken before the dump: a change during it shows at the next look.
            let stamp = stamp::of(node.netns.as_deref());
            let same = !force && stamp.complete() && self.stamps.get(&node.name) == Some(&stamp);
            if same {
                if let Some(v) = old.remove(&node.name) {
                    nodes.push(v);
                }
                continue;
            }
            self.stamps.insert(node.name.clone(), stamp);
            self.dumps += 1;
            match read::load(node.netns.as_deref()) {
                Ok(table) if !table.is_empty() => nodes.push(NodeView {
                    node,
                    table,
                    index: HashMap::new(),
                    found: Vec::new(),
                }),
                Ok(_) => {}
                Err(e) => self
                    .warnings
                    .push(format!("services of {}: {e}", node.name)),
            }
        }
        self.nodes = nodes;
        self.conntrack_at = None;
    }

    /// Dumps conntrack in every node with Services (at most every 100 ms) and attributes
    /// each connection addressed to one.
    pub fn refresh_conntrack(&mut self, identity: Option<&crate::identity::Identity>) {
        if self
            .conntrack_at
            .is_some_and(|t| t.elapsed() < CONNTRACK_EVERY)
        {
            return;
        }
        self.conntrack_at = Some(Instant::now());
        self.conntrack_ns = crate::sys::time::mono_now_ns();
        for n in &mut self.nodes {
            match conntrack::dump(n.node.netns.as_deref()) {
                Ok(conns) => n.attribute(&conns, identity),
                Err(e) => self
                    .warnings
                    .push(format!("conntrack of {}: {e}", n.node.name)),
            }
        }
    }

    /// For a packet seen at `ts_ns` (monotonic) whose connection was not in the last dump:
    /// dumps again unless the last dump was taken well after the packet (its entry, made as
    /// the packet crossed the node, would be in it). So every connection new since the last
    /// dump is looked for, however close together they come, and a packet that has no
    /// entry (a rejected connection) does not make every batch dump again.
    pub fn refresh_conntrack_for(
        &mut self,
        ts_ns: u64,
        identity: Option<&crate::identity::Identity>,
    ) {
        /// How long after a packet its conntrack entry surely exists.
        const SETTLED_NS: u64 = 20_000_000;
        if self.conntrack_ns > ts_ns.saturating_add(SETTLED_NS) {
            return;
        }
        self.conntrack_at = None;
        self.refresh_conntrack(identity);
    }

    /// The attribution of the connection a packet with this tuple belongs to (either
    /// direction, before or after NAT).
    #[must_use]
    pub fn lookup(
        &self,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Option<&Attribution> {
        let k = (proto, src, sport, dst, dport);
        self.nodes
            .iter()
            .find_map(|n| n.index.get(&k).map(|i| &n.found[*i]))
    }

    /// Whether a packet with these ends is addressed to (or answered from) a Service
    /// frontend: a `ClusterIP:port`, or a `NodePort`. Only such packets justify re-reading
    /// conntrack when their connection is not in the last dump.
    #[must_use]
    pub fn is_frontend(&self, proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> bool {
        let p = proto_name(proto);
        let hit = |ip: IpAddr, port: u16| {
            self.nodes.iter().any(|n| {
                matches!(ip, IpAddr::V4(v4) if n.table.by_cluster_ip(v4, p, port).is_some())
                    || n.table.by_node_port(p, port).is_some()
            })
        };
        hit(dst, dport) || hit(src, sport)
    }

    /// Every attributed connection (for counting per backend).
    pub fn all(&self) -> impl Iterator<Item = &Attribution> {
        self.nodes.iter().flat_map(|n| n.found.iter())
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NodeView {
    fn attribute(&mut self, conns: &[Conn], identity: Option<&crate::identity::Identity>) {
        self.index.clear();
        self.found.clear();
        for c in conns {
            let Some(a) = self.attribution(c, identity) else {
                continue;
            };
            let i = self.found.len();
            self.found.push(a);
            let (o, r) = (&c.orig, &c.reply);
            for k in [
                (o.proto, o.src, o.sport, o.dst, o.dport),
                (o.proto, o.dst, o.dport, o.src, o.sport),
                (r.proto, r.src, r.sport, r.dst, r.dport),
                (r.proto, r.dst, r.dport, r.src, r.sport),
            ] {
                self.index.insert(k, i);
            }
        }
    }

    fn attribution(
        &self,
        c: &Conn,
        identity: Option<&crate::identity::Identity>,
    ) -> Option<Attribution> {
        let proto = proto_name(c.orig.proto);
        let IpAddr::V4(dst) = c.orig.dst else {
            return None;
        };
        let (backend_ip, backend_port) = c.dnat_to()?;
        let (svc, via) = match self.table.by_cluster_ip(dst, proto, c.orig.dport) {
            Some(s) => (s, "ClusterIP"),
            None => (self.table.by_node_port(proto, c.orig.dport)?, "NodePort"),
        };
        let endpoint = ep(backend_ip, backend_port);
        let b = svc.backend(&endpoint);
        Some(Attribution {
            service: ServiceRef {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                port_name: svc.port_name.clone(),
                via,
                frontend: ep(c.orig.dst, c.orig.dport),
                cluster_ip: svc.cluster_ip,
                port: svc.port,
                protocol: svc.protocol.clone(),
                chain: svc.chain.clone(),
                mode: svc.mode,
                node: self.node.name.clone(),
            },
            backend: BackendRef {
                chain: b.map(|b| b.chain.clone()),
                workload: identity
                    .and_then(|id| id.with_ip(backend_ip).next())
                    .map(|w| w.name.clone()),
                affinity: svc.affinity,
                endpoint,
            },
            nat: NatRef {
                original: format!(
                    "{} -> {}",
                    ep(c.orig.src, c.orig.sport),
                    ep(c.orig.dst, c.orig.dport)
                ),
                reply: format!(
                    "{} -> {}",
                    ep(c.reply.src, c.reply.sport),
                    ep(c.reply.dst, c.reply.dport)
                ),
                dnat: Some(format!(
                    "{} -> {}",
                    ep(c.orig.dst, c.orig.dport),
                    ep(backend_ip, backend_port)
                )),
                snat: c.snat_to().map(|(ip, port)| {
                    format!("{} -> {}", ep(c.orig.src, c.orig.sport), ep(ip, port))
                }),
                conntrack_id: c.id,
            },
            conn: c.clone(),
        })
    }
}
