//! Building a planned lab and removing it. Every bridge-mode workload (and the external
//! client) is wired the same way: a veth pair from the node into its namespace, an address
//! and a default route there. Each workload also gets a cgroup, so its processes' sockets
//! are attributed to it.
//!
//! Everything made is recorded (/run/inspector/labs/<name>.json) so `lab down` removes
//! exactly that, from any process; a lab that fails half-way is rolled back.
use std::{
    net::{IpAddr, Ipv4Addr},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
};

use super::{
    LabError, Plan,
    netlink::{Nl, sysctl},
    plan::NetworkMode,
    rules,
};
use crate::{
    identity::lab_records::{LabRecord, LabWorkload, RecordedService},
    sys::netns::{self, run_in},
};

/// The lab's cgroup directory (inside the v2 hierarchy).
fn cgroup_root(lab: &str) -> Result<PathBuf, LabError> {
    let m = crate::sys::cgroup::v2_mount().ok_or(LabError::NoCgroupV2)?;
    Ok(m.join("inspector-lab").join(lab))
}

/// IPVS is there, or its module loads (checked before anything is made).
fn ipvs_available() -> Result<(), LabError> {
    let here = || std::path::Path::new("/proc/net/ip_vs").exists();
    if here() {
        return Ok(());
    }
    let why = match std::process::Command::new("modprobe").arg("ip_vs").output() {
        Ok(o) if o.status.success() && here() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("modprobe: {e}"),
    };
    Err(LabError::NoIpvs(if why.is_empty() {
        "no module".into()
    } else {
        why
    }))
}

/// Builds the lab. Fails without leaving anything behind.
pub fn up(plan: &Plan) -> Result<LabRecord, LabError> {
    if Path::new(crate::identity::lab_records::RECORD_DIR)
        .join(format!("{}.json", plan.name))
        .exists()
        || netns::named(&plan.node_ns).exists()
    {
        return Err(LabError::Exists(plan.name.clone()));
    }
    if plan.kube_proxy == Some(super::spec::KubeProxy::Ipvs) {
        ipvs_available()?;
    }
    let mut rec = LabRecord {
        lab: plan.name.clone(),
        workloads: Vec::new(),
        namespaces: Vec::new(),
        cgroups: Vec::new(),
        services: plan
            .services
            .iter()
            .flat_map(|s| {
                s.ports.iter().map(|p| RecordedService {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    port_name: p.name.clone(),
                    cluster_ip: s.cluster_ip,
                    port: p.port,
                    protocol: p.protocol.clone(),
                    node_port: p.node_port,
                })
            })
            .collect(),
    };
    match build(plan, &mut rec) {
        Ok(()) => {
            rec.save().map_err(LabError::io("writing the lab record"))?;
            Ok(rec)
        }
        Err(e) => {
            down(&rec);
            Err(e)
        }
    }
}

fn new_ns(rec: &mut LabRecord, name: &str) -> Result<PathBuf, LabError> {
    let p = netns::create(name).map_err(LabError::io(format!("creating namespace {name}")))?;
    rec.namespaces.push(name.to_owned());
    run_in(&p, || -> std::io::Result<()> {
        sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
        sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
        // Let root use ICMP datagram sockets (traffic::ping) in lab namespaces.
        sysctl("net/ipv4/ping_group_range", "0 2147483647")?;
        Nl::new()?.up("lo")
    })
    .and_then(|r| r)
    .map_err(LabError::io(format!("setting up namespace {name}")))?;
    Ok(p)
}

/// One veth pair from the node (`node_if`, optionally a port of `bridge`) to `eth0` in
/// namespace `ns` with `ip/len` and a default route via `gw`; `node_addr` is the node
/// end's own address (a routed link), if any.
struct Wire<'a> {
    ns: &'a Path,
    node_if: &'a str,
    bridge: Option<&'a str>,
    node_addr: Option<(Ipv4Addr, u8)>,
    ip: Ipv4Addr,
    len: u8,
    gw: Ipv4Addr,
}

fn wire(node: &Path, w: &Wire<'_>) -> Result<(), LabError> {
    let fd =
        std::fs::File::open(w.ns).map_err(LabError::io(format!("opening {}", w.ns.display())))?;
    let what = format!("wiring {}", w.node_if);
    run_in(node, || -> std::io::Result<()> {
        let nl = Nl::new()?;
        nl.veth(w.node_if, "eth0", Some(fd.as_raw_fd()))?;
        if let Some(b) = w.bridge {
            nl.set_master(w.node_if, b)?;
        }
        if let Some((a, l)) = w.node_addr {
            nl.add_addr(w.node_if, IpAddr::V4(a), l)?;
        }
        nl.up(w.node_if)
    })
    .and_then(|r| r)
    .map_err(LabError::io(what.clone()))?;
    run_in(w.ns, || -> std::io::Result<()> {
        let nl = Nl::new()?;
        nl.add_addr("eth0", IpAddr::V4(w.ip), w.len)?;
        nl.up("eth0")?;
        nl.route_v4(Ipv4Addr::UNSPECIFIED, 0, w.gw)
    })
    .and_then(|r| r)
    .map_err(LabError::io(what))
}

fn build(plan: &Plan, rec: &mut LabRecord) -> Result<(), LabError> {
    let node = new_ns(rec, &plan.node_ns)?;
    let (gw, len) = (plan.gateway, plan.subnet.1);
    run_in(&node, || -> std::io::Result<()> {
        let nl = Nl::new()?;
        nl.bridge(&plan.bridge)?;
        nl.add_addr(&plan.bridge, IpAddr::V4(gw), len)?;
        nl.up(&plan.bridge)?;
        sysctl("net/ipv4/ip_forward", "1")
    })
    .and_then(|r| r)
    .map_err(LabError::io(format!("creating bridge {}", plan.bridge)))?;
    for w in &plan.workloads {
        match (&w.mode, w.addr, &w.host_veth) {
            (NetworkMode::Bridge, Some(ip), Some(veth)) => {
                let p = new_ns(rec, &w.netns)?;
                wire(
                    &node,
                    &Wire {
                        ns: &p,
                        node_if: veth,
                        bridge: Some(&plan.bridge),
                        node_addr: None,
                        ip,
                        len,
                        gw,
                    },
                )?;
            }
            (NetworkMode::None, ..) => {
                new_ns(rec, &w.netns)?;
            }
            _ => {}
        }
    }
    if let Some(e) = &plan.external {
        let p = new_ns(rec, &e.netns)?;
        wire(
            &node,
            &Wire {
                ns: &p,
                node_if: &e.node_if,
                bridge: None,
                node_addr: Some((e.node_ip, e.prefix)),
                ip: e.ip,
                len: e.prefix,
                gw: e.node_ip,
            },
        )?;
    }
    rules::install(&node, plan)?;
    let root = cgroup_root(&plan.name)?;
    std::fs::create_dir_all(&root).map_err(LabError::io(format!("creating {}", root.display())))?;
    rec.cgroups.push(root.display().to_string());
    for w in &plan.workloads {
        let cg = root.join(&w.name);
        std::fs::create_dir(&cg).map_err(LabError::io(format!("creating {}", cg.display())))?;
        rec.cgroups.push(cg.display().to_string());
        rec.workloads.push(LabWorkload {
            name: w.name.clone(),
            netns: w.netns.clone(),
            network_mode: w.mode.as_string(),
            ips: w.addr.map(IpAddr::V4).into_iter().collect(),
            cgroup: Some(cg.display().to_string()),
            published: w
                .publish
                .iter()
                .map(|p| format!("{}:{}/{}", p.host_port, p.port, p.proto))
                .collect(),
        });
    }
    Ok(())
}

/// Labs that exist; all removed on drop (in reverse), also on failure, panic or interrupt.
#[derive(Default)]
pub struct LabGuard(pub Vec<LabRecord>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        for r in self.0.drain(..).rev() {
            down(&r);
        }
    }
}

impl LabGuard {
    /// Lets the labs live on (the caller keeps them).
    pub fn keep(mut self) -> Vec<LabRecord> {
        std::mem::take(&mut self.0)
    }
}

/// Removes what a record lists: the workloads' processes (`cgroup.kill`), cgroups (deepest
/// first), namespaces (in reverse), the record.
pub fn down(rec: &LabRecord) {
    for cg in rec.cgroups.iter().rev() {
        let dir = Path::new(cg);
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        // Killed processes leave the cgroup asynchronously; rmdir succeeds once they have.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::remove_dir(dir).is_err()
            && dir.exists()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    if let Some(parent) = rec
        .cgroups
        .first()
        .and_then(|c| Path::new(c).parent().map(Path::to_owned))
    {
        // inspector-lab/ itself, once no lab uses it.
        let _ = std::fs::remove_dir(parent);
    }
    for n in rec.namespaces.iter().rev() {
        let _ = netns::delete(n);
    }
    LabRecord::remove(&rec.lab);
}

/// Removes a lab of this name left by an earlier run that was killed: what its record
/// lists, and any namespace named after it. Returns how many namespaces went.
pub fn remove_stale(name: &str) -> usize {
    let mut n = 0;
    if let Ok(rec) = LabRecord::load(name) {
        down(&rec);
        n += rec.namespaces.len();
    }
    for ns in netns::list_with_prefix(&format!("{name}-")) {
        let _ = netns::delete(&ns);
        n += 1;
    }
    n
}

/// Runs `argv` as a process of `workload`: in its namespace and its cgroup (like
/// `docker exec`). Only returns on error.
pub fn exec(rec: &LabRecord, workload: &str, argv: &[String]) -> LabError {
    let Some(w) = rec.workloads.iter().find(|w| w.name == workload) else {
        return LabError::NoWorkload {
            lab: rec.lab.clone(),
            name: workload.to_owned(),
            have: rec
                .workloads
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
    };
    let Some((prog, args)) = argv.split_first() else {
        return LabError::NoCommand;
    };
    let Some(cg) = w.cgroup.as_deref() else {
        return LabError::Io {
            what: format!("workload {workload}"),
            source: std::io::Error::other("it has no cgroup"),
        };
    };
    if let Err(e) = std::fs::write(
        Path::new(cg).join("cgroup.procs"),
        std::process::id().to_string(),
    ) {
        return LabError::io(format!("joining cgroup {cg}"))(e);
    }
    match netns::command_in(&netns::named(&w.netns), prog) {
        Ok(mut c) => LabError::Spawn {
            program: prog.clone(),
            source: c.args(args).exec(),
        },
        Err(e) => LabError::io(format!("entering {}", w.netns))(e),
    }
}
