//! `inspector status`: what works on this node and why - the first command to run on a new
//! node. It looks only (nothing is loaded, attached, mounted or removed): the kernel and its
//! features (`probe::features`), lockdown, privileges, cgroups, the attach mode a session
//! would pick, container runtimes, kube-proxy's mode, and filters left by a killed run.
use std::path::Path;

use serde::Serialize;

use crate::probe::{self, features::Feature, preflight};

/// The node as the inspector sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub kernel: String,
    pub lockdown: String,
    /// "ok", or the capabilities missing.
    pub privileges: String,
    pub cgroup: String,
    /// What `--attach` would be left to pick ("tcx" or "tc"), or why neither works.
    pub attach: String,
    /// Container runtimes whose socket is there: "docker (path)", "containerd (path)".
    pub runtimes: Vec<String>,
    /// kube-proxy's mode as its rules on the host say: iptables, nftables, ipvs, or none.
    pub kube_proxy: String,
    /// Filters (and qdiscs) of ours left by an inspector that died; `inspector cleanup`
    /// removes them.
    pub leftovers: usize,
    pub features: Vec<Feature>,
}

const RUNTIMES: [(&str, &str); 3] = [
    ("docker", crate::identity::docker::DEFAULT_SOCKET),
    ("containerd", "/run/containerd/containerd.sock"),
    ("cri-o", "/run/crio/crio.sock"),
];

fn kube_proxy() -> String {
    let mut modes: Vec<&str> = Vec::new();
    if let Ok(nodes) = crate::services::read::node_services(None) {
        for n in nodes.iter().filter(|n| n.node.netns.is_none()) {
            modes.extend(n.table.services.iter().map(|s| s.mode));
            if n.ipvs.starts_with("IPVS in use") {
                modes.push("ipvs");
            }
        }
    }
    modes.sort_unstable();
    modes.dedup();
    if modes.is_empty() {
        "none found (no KUBE-SERVICES rules, no kube-proxy nft table, no kube-ipvs0)".into()
    } else {
        modes.join(", ")
    }
}

/// Looks at the node. Needs no privilege for most lines; says which ones it could not read.
#[must_use]
pub fn status() -> Status {
    let btf = preflight::btf_path();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|e| format!("unknown ({e})"), |s| s.trim().to_owned());
    let privileges = match preflight::privileges() {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    let cgroup = match crate::sys::cgroup::v2_mount() {
        Some(p) => format!("v2 at {}", p.display()),
        None => "v1 only (socket owners are not recorded)".into(),
    };
    // What `flows` and `trace` use by default, then what per-hop timing uses.
    let attach = match preflight::attach_mode(None) {
        Ok(m) if preflight::global_hooks() => format!("global (per-hop timing: {})", m.name()),
        Ok(m) => m.name().to_owned(),
        Err(e) => e.to_string(),
    };
    let runtimes = RUNTIMES
        .iter()
        .filter(|(_, p)| Path::new(p).exists())
        .map(|(n, p)| format!("{n} ({p})"))
        .collect();
    let all = crate::topology::netns::discover();
    let (left, _) = probe::cleanup::sweep(&all, true);
    Status {
        kernel,
        lockdown: probe::features::lockdown().unwrap_or_else(|| "not reported".into()),
        privileges,
        cgroup,
        attach,
        runtimes,
        kube_proxy: kube_proxy(),
        leftovers: left.len(),
        features: probe::features::probe_all(&btf),
    }
}
