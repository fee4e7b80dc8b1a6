//! Who owns a namespace, an address or a socket: containers from Docker, pods from CRI,
//! workloads of our own lab, and any runtime's containers found through procfs/cgroups.
//!
//! Every provider yields [`Workload`]s; [`Identity`] indexes them by namespace, address and
//! cgroup, and [`Identity::endpoint`] answers "who is this end of a flow" - or `None`, never a
//! guess. When several workloads share a namespace (Docker's container mode, pods) and the
//! socket owner is unknown, the answer names all of them ("shared by A, B").
pub mod asking;
pub mod cgroup;
pub mod cri;
pub mod docker;
pub mod lab_records;
pub mod lifecycle;
pub mod map;
pub mod owners;
pub mod procfs;
pub mod resolve;
pub mod select;
pub mod tracker;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use serde::Serialize;

pub use resolve::{Endpoint, Resolver, SocketOwners};
pub use tracker::Tracker;

/// What kind of thing a workload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A container (Docker, or a runtime seen only through cgroups).
    Container,
    /// A Kubernetes pod sandbox (CRI): the namespace owner; its containers are listed in it.
    Pod,
    /// A workload of inspector's own lab.
    Lab,
}

impl Kind {
    /// As JSON writes it: container, pod, lab.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Pod => "pod",
            Self::Lab => "lab",
        }
    }
}

/// A port published on the host (Docker `-p`, lab spec).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub proto: String,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

/// One container, pod or lab workload, as its provider describes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Workload {
    /// "namespace/name" for pods, the container or workload name otherwise.
    pub name: String,
    pub id: String,
    pub kind: Option<Kind>,
    /// "docker", "containerd", "cri-o", "podman", "lab", ...
    pub runtime: String,
    /// bridge, host, none, container:<id>, pod, or the network's name; `None` if unknown.
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Namespace inode, when known (a live process or a netns path to stat).
    pub netns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_path: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    pub ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// cgroup v2 ids (inode of the cgroup directory) of the workload's processes: what the
    /// kernel reports as a socket's owner.
    #[serde(skip)]
    pub cgroups: Vec<u64>,
    /// The directories of those cgroups (where the socket-owner program is attached).
    #[serde(skip)]
    pub cgroup_dirs: Vec<std::path::PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// For pods: the containers in the pod (names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// Ids of the containers that make up this workload besides itself (a pod's
    /// containers), so their processes and sockets count as the workload's.
    #[serde(skip)]
    pub member_ids: Vec<String>,
}

/// A runtime's 64-hex id cut to 12 characters, as `docker ps` shows it; other ids whole.
#[must_use]
pub fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// A network mode for tables: `container:<64 hex>` shortened like [`short_id`].
#[must_use]
pub fn mode_label(mode: Option<&str>) -> String {
    match mode {
        None => "mode unknown".into(),
        Some(m) => match m.strip_prefix("container:") {
            Some(id) => format!("container:{}", short_id(id)),
            None => m.to_owned(),
        },
    }
}

impl Workload {
    /// See [`short_id`].
    #[must_use]
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// Whether its flows need the socket's owner to be told from others': it shares the
    /// node's namespace (host mode) or its namespace with another workload.
    #[must_use]
    pub fn needs_socket_owner(&self, identity: &Identity) -> bool {
        self.is_host_mode()
            || self
                .netns
                .is_some_and(|ns| identity.in_netns(ns).nth(1).is_some())
    }

    /// Whether this workload lives in the node's own namespace (host mode).
    #[must_use]
    pub fn is_host_mode(&self) -> bool {
        self.network_mode.as_deref() == Some("host")
    }
}

/// A source of workloads.
pub trait Provider {
    /// Provider name for messages ("docker", "cri", ...).
    fn name(&self) -> &'static str;
    /// The workloads it knows now.
    ///
    /// # Errors
    /// When the runtime cannot be asked (socket gone, bad answer).
    fn list(&mut self) -> Result<Vec<Workload>, Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Every workload known, indexed for the lookups flows need.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// Live workloads first (`live` of them), then departed ones.
    pub workloads: Vec<Workload>,
    live: usize,
    by_netns: HashMap<u64, Vec<usize>>,
    by_ip: HashMap<IpAddr, Vec<usize>>,
    by_cgroup: HashMap<u64, usize>,
}

impl Identity {
    /// Indexes `workloads`, all live.
    #[must_use]
    pub fn new(workloads: Vec<Workload>) -> Self {
        Self::with_departed(workloads, Vec::new())
    }

    /// Indexes `live` workloads, then `departed` ones (with the number of the scan that last
    /// saw each, most recent first). A departed workload is indexed only under the
    /// namespace and addresses no live workload, nor one that departed later, holds: the
    /// kernel reuses namespace inodes and runtimes reuse addresses at once. Workloads that
    /// departed together (two containers sharing a namespace) do not hide each other.
    #[must_use]
    pub fn with_departed(mut live: Vec<Workload>, mut departed: Vec<(u64, Workload)>) -> Self {
        live.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.name.cmp(&b.name)));
        departed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(&b.1.name)));
        let n_live = live.len();
        let groups: Vec<u64> = departed.iter().map(|(at, _)| *at).collect();
        let mut me = Self {
            workloads: live,
            live: n_live,
            ..Self::default()
        };
        me.workloads.extend(departed.into_iter().map(|(_, w)| w));
        let mut taken_ns = std::collections::HashSet::new();
        let mut taken_ip = std::collections::HashSet::new();
        let mut group: Option<u64> = None;
        for i in 0..me.workloads.len() {
            let departed = i >= n_live;
            if departed && group != Some(groups[i - n_live]) {
                // A new group: everything indexed so far is taken for it.
                group = Some(groups[i - n_live]);
                taken_ns.extend(me.by_netns.keys().copied());
                taken_ip.extend(me.by_ip.keys().copied());
            }
            let w = &me.workloads[i];
            if let Some(ns) = w.netns
                && !taken_ns.contains(&ns)
            {
                me.by_netns.entry(ns).or_default().push(i);
            }
            for ip in &w.ips {
                if !taken_ip.contains(ip) {
                    me.by_ip.entry(*ip).or_default().push(i);
                }
            }
            for cg in &w.cgroups {
                me.by_cgroup.entry(*cg).or_insert(i);
            }
        }
        me
    }

    /// The workloads that exist now (not the departed ones kept for naming old flows).
    #[must_use]
    pub fn live(&self) -> &[Workload] {
        &self.workloads[..self.live]
    }

    /// Workloads whose network namespace is `inode`.
    pub fn in_netns(&self, inode: u64) -> impl Iterator<Item = &Workload> {
        self.by_netns
            .get(&inode)
            .into_iter()
            .flatten()
            .map(|i| &self.workloads[*i])
    }

    /// Workloads that report `ip` as theirs.
    pub fn with_ip(&self, ip: IpAddr) -> impl Iterator<Item = &Workload> {
        self.by_ip
            .get(&ip)
            .into_iter()
            .flatten()
            .map(|i| &self.workloads[*i])
    }

    /// The workload whose processes live in cgroup `id`.
    #[must_use]
    pub fn by_cgroup(&self, id: u64) -> Option<&Workload> {
        self.by_cgroup.get(&id).map(|i| &self.workloads[*i])
    }

    /// A workload by name, id or id prefix (at least 4 characters).
    #[must_use]
    pub fn find(&self, key: &str) -> Option<&Workload> {
        self.workloads
            .iter()
            .find(|w| w.name == key || w.id == key)
            .or_else(|| {
                self.workloads
                    .iter()
                    .find(|w| w.name.rsplit('/').next() == Some(key))
            })
            .or_else(|| {
                (key.len() >= 4)
                    .then(|| self.workloads.iter().find(|w| w.id.starts_with(key)))
                    .flatten()
            })
    }
}
