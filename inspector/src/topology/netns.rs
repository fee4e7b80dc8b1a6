//! Network namespaces on this node: where they are found and what to call them (entering
//! one is `sys::netns`).
//!
//! Sources, in order of preference for naming: the namespace of PID 1 ("host"), bind mounts in
//! /var/run/netns (`ip netns` names), Docker sandboxes in /var/run/docker/netns, and any other
//! namespace some process lives in (/proc/PID/ns/net). Deduplicated by (device, inode).
//!
//! We never keep a namespace file or a socket inside a namespace open between scans: holding
//! either would keep a deleted namespace (and its veth peers) alive, which would change the
//! node we are only meant to observe.
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Where Docker bind-mounts its sandboxes.
pub const DOCKER_DIR: &str = "/var/run/docker/netns";

/// How a namespace was found, which also says how it is named.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetnsKind {
    /// The namespace of PID 1.
    Host,
    /// `ip netns` name in /var/run/netns.
    Named,
    /// Docker sandbox in /var/run/docker/netns.
    Docker,
    /// Only known through a process.
    Process,
}

/// One network namespace.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Netns {
    /// Inode of the namespace (what `ls -l /proc/PID/ns/net` shows); its identity.
    pub inode: u64,
    #[serde(skip)]
    pub dev: u64,
    /// A path that opens it (a bind mount, or /proc/PID/ns/net).
    pub path: PathBuf,
    /// Human name: "host", the `ip netns` name, "docker:<sandbox>", or "pid:<pid>(<comm>)".
    pub name: String,
    pub kind: NetnsKind,
}

fn ns_id(path: &Path) -> Option<(u64, u64)> {
    let md = fs::metadata(path).ok()?;
    Some((md.dev(), md.ino()))
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| String::new(), |s| s.trim().to_owned())
}

fn add(found: &mut HashMap<(u64, u64), Netns>, path: PathBuf, name: String, kind: NetnsKind) {
    let Some((dev, inode)) = ns_id(&path) else {
        return;
    };
    let better = found.get(&(dev, inode)).is_none_or(|e| kind < e.kind);
    if better {
        found.insert(
            (dev, inode),
            Netns {
                inode,
                dev,
                path,
                name,
                kind,
            },
        );
    }
}

/// A path to the host's (initial) namespace. Kernel threads always live there, so kthreadd
/// (PID 2) is the most reliable witness; PID 1 may be unreadable (a hardened init), and our
/// own namespace is the last resort.
fn host_path() -> PathBuf {
    if comm(2) == "kthreadd" && ns_id(Path::new("/proc/2/ns/net")).is_some() {
        return PathBuf::from("/proc/2/ns/net");
    }
    if ns_id(Path::new("/proc/1/ns/net")).is_some() {
        return PathBuf::from("/proc/1/ns/net");
    }
    PathBuf::from("/proc/self/ns/net")
}

/// Every network namespace visible from here.
#[must_use]
pub fn discover() -> Vec<Netns> {
    let mut found: HashMap<(u64, u64), Netns> = HashMap::new();
    add(&mut found, host_path(), "host".into(), NetnsKind::Host);
    for (dir, kind) in [
        (crate::sys::netns::NAMED_DIR, NetnsKind::Named),
        (DOCKER_DIR, NetnsKind::Docker),
    ] {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let name = if kind == NetnsKind::Docker {
                format!("docker:{name}")
            } else {
                name
            };
            add(&mut found, e.path(), name, kind.clone());
        }
    }
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let Some(id) = ns_id(&path) else { continue };
            if found.contains_key(&id) {
                continue;
            }
            add(
                &mut found,
                path,
                format!("pid:{pid}({})", comm(pid)),
                NetnsKind::Process,
            );
        }
    }
    let mut v: Vec<Netns> = found.into_values().collect();
    v.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    v
}
