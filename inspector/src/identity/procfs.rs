//! The runtime-independent fallback: every process's cgroup names its container (see
//! `cgroup::parse_path`) and its /proc/PID/ns/net names the namespace. This fills in what
//! runtimes' APIs do not say (the cgroup ids that own sockets, pids, namespaces) and reports
//! containers of runtimes we have no API for.
use std::{collections::HashMap, fs, os::unix::fs::MetadataExt as _, path::Path};

use super::{Kind, Workload, cgroup};

/// Namespace inode of a process.
#[must_use]
pub fn netns_of_pid(pid: u32) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// One process that belongs to a container.
#[derive(Clone, Debug)]
pub struct ContainerProcess {
    pub pid: u32,
    pub container: cgroup::CgroupContainer,
    /// Its cgroup v2 directory and id.
    pub cgroup: Option<(std::path::PathBuf, u64)>,
    pub netns: Option<u64>,
}

/// Every process on the node that lives in a container's cgroup.
#[must_use]
pub fn container_processes(v2: Option<&Path>) -> Vec<ContainerProcess> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let path = cgroup::of_pid(pid)?;
            let container = cgroup::parse_path(&path)?;
            Some(ContainerProcess {
                pid,
                container,
                cgroup: v2.and_then(|m| crate::sys::cgroup::v2_of_pid(m, pid)),
                netns: netns_of_pid(pid),
            })
        })
        .collect()
}

/// Adds pids, cgroup ids and namespaces from `procs` to the workloads that own them (by
/// container id, or member container id for pods), and returns a workload for each container
/// no provider knew.
pub fn enrich(workloads: &mut [Workload], procs: &[ContainerProcess]) -> Vec<Workload> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, w) in workloads.iter().enumerate() {
        owner.insert(w.id.as_str(), i);
        for m in &w.member_ids {
            owner.insert(m.as_str(), i);
        }
    }
    let mut extra: HashMap<String, Workload> = HashMap::new();
    let mut adds: Vec<(usize, &ContainerProcess)> = Vec::new();
    for p in procs {
        if let Some(i) = owner.get(p.container.id.as_str()) {
            adds.push((*i, p));
            continue;
        }
        let w = extra
            .entry(p.container.id.clone())
            .or_insert_with(|| Workload {
                name: p.container.id[..12].to_owned(),
                id: p.container.id.clone(),
                kind: Some(Kind::Container),
                runtime: p.container.runtime.to_owned(),
                netns: p.netns,
                ..Workload::default()
            });
        add_process(w, p);
    }
    for (i, p) in adds {
        add_process(&mut workloads[i], p);
    }
    let mut v: Vec<Workload> = extra.into_values().collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

fn add_process(w: &mut Workload, p: &ContainerProcess) {
    if !w.pids.contains(&p.pid) {
        w.pids.push(p.pid);
    }
    if let Some((dir, id)) = &p.cgroup
        && !w.cgroups.contains(id)
    {
        w.cgroups.push(*id);
        w.cgroup_dirs.push(dir.clone());
    }
    if w.netns.is_none() {
        w.netns = p.netns;
    }
}
