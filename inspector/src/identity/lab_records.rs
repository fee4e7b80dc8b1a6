//! Workloads of inspector's own labs. `lab up` (and the demo) record what they built in
//! /run/inspector/labs/<prefix>.json and remove the record with the lab; this provider reads
//! those records, so a lab's namespaces carry their workload names in every flow.
use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Error, Kind, Provider, Workload};

/// Where lab records live.
pub const RECORD_DIR: &str = "/run/inspector/labs";

/// The namespace of a lab's node: where its bridge, its rules (Docker's, kube-proxy's) and
/// its host-mode workloads live. One name for every place that needs it.
#[must_use]
pub fn node_ns(lab: &str) -> String {
    format!("{lab}-node")
}

/// One workload of a lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabWorkload {
    pub name: String,
    /// The `ip netns` name of its namespace (for host mode, the lab's node namespace).
    pub netns: String,
    pub network_mode: String,
    pub ips: Vec<IpAddr>,
    /// Its cgroup directory (its processes' sockets are attributed to it).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Published ports, "HOSTPORT:PORT/proto".
    #[serde(default)]
    pub published: Vec<String>,
}

/// What one lab built.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabRecord {
    pub lab: String,
    pub workloads: Vec<LabWorkload>,
    /// Everything the lab made, for `lab down`.
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// The Service ports of a Kubernetes-node lab (what IPVS mode does not write into the
    /// kernel: their names).
    #[serde(default)]
    pub services: Vec<RecordedService>,
}

/// One Service port as a lab built it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RecordedService {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub cluster_ip: std::net::Ipv4Addr,
    pub port: u16,
    pub protocol: String,
    pub node_port: Option<u16>,
}

impl LabRecord {
    fn path(dir: &Path, lab: &str) -> PathBuf {
        dir.join(format!("{lab}.json"))
    }

    /// Writes the record (replacing an older one of the same lab).
    ///
    /// # Errors
    /// When /run/inspector/labs cannot be written.
    pub fn save(&self) -> std::io::Result<()> {
        let dir = Path::new(RECORD_DIR);
        fs::create_dir_all(dir)?;
        fs::write(Self::path(dir, &self.lab), serde_json::to_vec_pretty(self)?)
    }

    /// Reads the record of `lab`.
    ///
    /// # Errors
    /// When there is none (the lab is not up) or it cannot be read.
    pub fn load(lab: &str) -> std::io::Result<Self> {
        let text = fs::read(Self::path(Path::new(RECORD_DIR), lab))?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }

    /// Every lab record on this node.
    #[must_use]
    pub fn all() -> Vec<Self> {
        let Ok(rd) = fs::read_dir(RECORD_DIR) else {
            return Vec::new();
        };
        let mut v: Vec<Self> = rd
            .filter_map(Result::ok)
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
            .collect();
        v.sort_by(|a, b| a.lab.cmp(&b.lab));
        v
    }

    /// Removes the record of `lab` (no error if there is none).
    pub fn remove(lab: &str) {
        let _ = fs::remove_file(Self::path(Path::new(RECORD_DIR), lab));
    }
}

/// Reads every lab record in a directory.
pub struct Labs {
    pub dir: PathBuf,
}

impl Default for Labs {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(RECORD_DIR),
        }
    }
}

impl Provider for Labs {
    fn name(&self) -> &'static str {
        "lab"
    }

    fn list(&mut self) -> Result<Vec<Workload>, Error> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut v = Vec::new();
        for e in rd.filter_map(Result::ok) {
            let Ok(text) = fs::read(e.path()) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<LabRecord>(&text) else {
                continue;
            };
            for w in rec.workloads {
                let path = crate::sys::netns::named(&w.netns);
                // A record whose namespace is gone describes nothing live.
                let Some(inode) = crate::sys::netns::inode_of(&path) else {
                    continue;
                };
                v.push(Workload {
                    id: format!("{}/{}", rec.lab, w.name),
                    name: w.name,
                    kind: Some(Kind::Lab),
                    runtime: "lab".into(),
                    network_mode: Some(w.network_mode),
                    netns: Some(inode),
                    netns_path: Some(path.display().to_string()),
                    ips: w.ips,
                    cgroups: w
                        .cgroup
                        .iter()
                        .filter_map(|c| fs::metadata(c).ok())
                        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                        .collect(),
                    cgroup_dirs: w
                        .cgroup
                        .iter()
                        .filter(|c| Path::new(c).is_dir())
                        .map(PathBuf::from)
                        .collect(),
                    ports: w
                        .published
                        .iter()
                        .filter_map(|p| {
                            let (ports, proto) = p.split_once('/')?;
                            let (h, c) = ports.split_once(':')?;
                            Some(super::PublishedPort {
                                proto: proto.to_owned(),
                                host_ip: None,
                                host_port: h.parse().ok()?,
                                container_port: c.parse().ok()?,
                            })
                        })
                        .collect(),
                    ..Workload::default()
                });
            }
        }
        Ok(v)
    }
}
