//! Reading a node's live rules: `iptables-save` (nat and filter tables) and
//! `nft -j list table ip kube-proxy`, run inside the node's network namespace, and whether
//! kube-proxy's IPVS mode is in use (which this inspector does not decode).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::{ServiceTable, ServicesError, iptables, nft};

/// A namespace whose service rules are read: the host's, or a lab node's.
#[derive(Clone, Debug)]
pub struct Node {
    /// "host" or the lab's node namespace name.
    pub name: String,
    /// None: the inspector's own namespace.
    pub netns: Option<PathBuf>,
}

fn run(
    netns: Option<&Path>,
    program: &'static str,
    args: &[&str],
) -> Result<std::process::Output, ServicesError> {
    let spawn = |source| ServicesError::Spawn { program, source };
    let mut c = match netns {
        Some(p) => crate::sys::netns::command_in(p, program).map_err(spawn)?,
        None => Command::new(program),
    };
    c.args(args).output().map_err(spawn)
}

/// `iptables-save` of the nat and filter tables ("" when iptables has no rules there).
///
/// # Errors
/// iptables-save missing or failing.
pub fn iptables_save(netns: Option<&Path>) -> Result<String, ServicesError> {
    let mut text = String::new();
    for t in ["filter", "nat"] {
        let out = run(netns, "iptables-save", &["-t", t])?;
        if !out.status.success() {
            return Err(ServicesError::Failed {
                command: format!("iptables-save -t {t}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(text)
}

/// `nft -j list table ip kube-proxy`, or None when there is no such table.
///
/// # Errors
/// nft missing, or failing for another reason than a missing table.
pub fn nft_json(netns: Option<&Path>) -> Result<Option<String>, ServicesError> {
    let out = run(netns, "nft", &["-j", "list", "table", "ip", "kube-proxy"])?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file or directory") || err.contains("does not exist") {
        return Ok(None);
    }
    Err(ServicesError::Failed {
        command: "nft -j list table ip kube-proxy".into(),
        stderr: err.trim().to_owned(),
    })
}

/// What kube-proxy's IPVS mode leaves on a node, if anything.
#[must_use]
pub fn ipvs_state(netns: Option<&Path>) -> String {
    let probe = || {
        let proc_ = Path::new("/proc/thread-self/net/ip_vs").exists();
        let dummy = Path::new("/sys/class/net/kube-ipvs0").exists()
            || std::fs::read_to_string("/proc/thread-self/net/dev")
                .is_ok_and(|d| d.contains("kube-ipvs0:"));
        (proc_, dummy)
    };
    let (proc_, dummy) = match netns {
        Some(p) => crate::sys::netns::run_in(p, probe).unwrap_or((false, false)),
        None => probe(),
    };
    match (proc_, dummy) {
        (true, true) => "IPVS in use (kube-ipvs0 and /proc/net/ip_vs present): its virtual \
                         servers are read over IPVS's generic netlink (mode ipvs)"
            .into(),
        (true, false) => "the kernel has IPVS (/proc/net/ip_vs) but no kube-ipvs0: kube-proxy \
                          is not in IPVS mode"
            .into(),
        (false, true) => {
            "kube-ipvs0 exists but the kernel has no IPVS (/proc/net/ip_vs absent)".into()
        }
        (false, false) => "no IPVS: this kernel has no /proc/net/ip_vs and there is no \
                           kube-ipvs0 (kube-proxy's IPVS mode cannot run here)"
            .into(),
    }
}

/// The service table of one node namespace: iptables-mode and nftables-mode rules merged.
///
/// # Errors
/// iptables-save or nft failing, or unreadable nft JSON.
pub fn load(netns: Option<&Path>) -> Result<ServiceTable, ServicesError> {
    let ipt = iptables::parse(&iptables_save(netns)?);
    let nf = match nft_json(netns)? {
        Some(j) => nft::parse(&j)?,
        None => Vec::new(),
    };
    Ok(ServiceTable::new(ipt)
        .merged(ServiceTable::new(nf))
        .merged(ServiceTable::new(super::ipvs_entries::entries(netns))))
}

/// The host and every lab's node namespace.
#[must_use]
pub fn nodes() -> Vec<Node> {
    let mut v = vec![Node {
        name: "host".into(),
        netns: None,
    }];
    for rec in crate::identity::lab_records::LabRecord::all() {
        let node = crate::identity::lab_records::node_ns(&rec.lab);
        if rec.namespaces.contains(&node) {
            v.push(Node {
                netns: Some(crate::sys::netns::named(&node)),
                name: node,
            });
        }
    }
    v
}

/// One node's Services as its rules have them, and its IPVS state.
pub struct NodeServices {
    pub node: Node,
    pub table: ServiceTable,
    pub ipvs: String,
}

/// The Services of the host and every lab node, or of one lab's node.
///
/// # Errors
/// A lab that is not up; rules that cannot be read.
pub fn node_services(lab: Option<&str>) -> Result<Vec<NodeServices>, ServicesError> {
    let all = nodes();
    let chosen: Vec<Node> = match lab {
        None => all,
        Some(l) => {
            let want = crate::identity::lab_records::node_ns(l);
            let v: Vec<Node> = all.into_iter().filter(|n| n.name == want).collect();
            if v.is_empty() {
                return Err(ServicesError::NoLab(l.to_owned()));
            }
            v
        }
    };
    chosen
        .into_iter()
        .map(|node| {
            Ok(NodeServices {
                table: load(node.netns.as_deref())?,
                ipvs: ipvs_state(node.netns.as_deref()),
                node,
            })
        })
        .collect()
}
