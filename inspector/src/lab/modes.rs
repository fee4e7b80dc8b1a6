//! The four-mode lab: Docker's bridge, host, none and container modes rebuilt in network
//! namespaces. A "node" namespace plays the Docker host: a `docker0`-style bridge, one veth
//! pair per bridge-mode workload, Docker's iptables rules (see `rules`), IP forwarding, and
//! optionally a routed external namespace. Host-mode workloads live in the node namespace,
//! container-mode ones in their target's, none-mode ones in a namespace with only `lo`.
//! Each workload also gets a cgroup, so its processes' sockets are attributed to it.
//!
//! Everything made is recorded (/run/inspector/labs/<name>.json) so `lab down` removes
//! exactly that, from any process; a lab that fails half-way is rolled back.
use std::{
    net::{IpAddr, Ipv4Addr},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, bail};

use super::{
    netlink::{Nl, sysctl},
    rules,
    spec::{KubeProxy, Mode, Plan},
};
use crate::{
    identity::lab::{LabRecord, LabWorkload},
    sys::netns::{self, run_in},
};

/// The lab's cgroup directory (inside the v2 hierarchy).
fn cgroup_root(lab: &str) -> anyhow::Result<PathBuf> {
    let m = crate::sys::cgroup::v2_mount()
        .context("no cgroup v2 hierarchy is mounted: lab workloads need one for their sockets")?;
    Ok(m.join("inspector-lab").join(lab))
}

/// Builds the lab. Fails without leaving anything behind.
pub fn up(plan: &Plan) -> anyhow::Result<LabRecord> {
    if Path::new(crate::identity::lab::RECORD_DIR)
        .join(format!("{}.json", plan.name))
        .exists()
        || netns::named(&plan.node_ns).exists()
    {
        bail!(
            "lab '{}' exists already; remove it with `inspector lab down --name {}`",
            plan.name,
            plan.name
        );
    }
    let mut rec = LabRecord {
        lab: plan.name.clone(),
        workloads: Vec::new(),
        namespaces: Vec::new(),
        cgroups: Vec::new(),
    };
    match build(plan, &mut rec) {
        Ok(()) => {
            rec.save().context("writing the lab record")?;
            Ok(rec)
        }
        Err(e) => {
            down(&rec);
            Err(e)
        }
    }
}

fn new_ns(rec: &mut LabRecord, name: &str) -> anyhow::Result<PathBuf> {
    let p = netns::create(name)?;
    rec.namespaces.push(name.to_owned());
    run_in(&p, || -> std::io::Result<()> {
        sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
        sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
        sysctl("net/ipv4/ping_group_range", "0 2147483647")?;
        Nl::new()?.up("lo")
    })??;
    Ok(p)
}

fn build(plan: &Plan, rec: &mut LabRecord) -> anyhow::Result<()> {
    let node = new_ns(rec, &plan.node_ns)?;
    let (gw, len) = (plan.gateway, plan.subnet.1);
    run_in(&node, || -> std::io::Result<()> {
        let nl = Nl::new()?;
        nl.bridge(&plan.bridge)?;
        nl.add_addr(&plan.bridge, IpAddr::V4(gw), len)?;
        nl.up(&plan.bridge)?;
        sysctl("net/ipv4/ip_forward", "1")
    })??;
    for w in &plan.workloads {
        match w.mode {
            Mode::Bridge => {
                let p = new_ns(rec, &w.netns)?;
                let ip = w.addr.context("bridge workload without address")?;
                let veth = w
                    .host_veth
                    .clone()
                    .context("bridge workload without veth")?;
                let fd = std::fs::File::open(&p)?;
                run_in(&node, || -> std::io::Result<()> {
                    let nl = Nl::new()?;
                    nl.veth(&veth, "eth0", Some(fd.as_raw_fd()))?;
                    nl.set_master(&veth, &plan.bridge)?;
                    nl.up(&veth)
                })??;
                run_in(&p, || -> std::io::Result<()> {
                    let nl = Nl::new()?;
                    nl.add_addr("eth0", IpAddr::V4(ip), len)?;
                    nl.up("eth0")?;
                    nl.route_v4(Ipv4Addr::UNSPECIFIED, 0, gw)
                })??;
            }
            Mode::None => {
                new_ns(rec, &w.netns)?;
            }
            Mode::Host | Mode::Container(_) => {}
        }
    }
    if let Some((ns, node_if, node_ip, ext_ip, plen)) = &plan.external {
        let p = new_ns(rec, ns)?;
        let fd = std::fs::File::open(&p)?;
        run_in(&node, || -> std::io::Result<()> {
            let nl = Nl::new()?;
            nl.veth(node_if, "eth0", Some(fd.as_raw_fd()))?;
            nl.add_addr(node_if, IpAddr::V4(*node_ip), *plen)?;
            nl.up(node_if)
        })??;
        run_in(&p, || -> std::io::Result<()> {
            let nl = Nl::new()?;
            nl.add_addr("eth0", IpAddr::V4(*ext_ip), *plen)?;
            nl.up("eth0")?;
            nl.route_v4(Ipv4Addr::UNSPECIFIED, 0, *node_ip)
        })??;
    }
    install_rules(&node, plan)?;
    let root = cgroup_root(&plan.name)?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    rec.cgroups.push(root.display().to_string());
    for w in &plan.workloads {
        let cg = root.join(&w.name);
        std::fs::create_dir(&cg).with_context(|| format!("creating {}", cg.display()))?;
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

fn feed(node: &Path, plan: &Plan, program: &str, args: &[&str], text: &str) -> anyhow::Result<()> {
    let mut child = netns::command_in(node, program)?
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program} (installed by `cargo xtask setup`)"))?;
    std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} in {} failed: {}",
            plan.node_ns,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Several `iptables-restore` inputs as one: each table once, the inputs' lines in order.
/// One full restore (no `--noflush`) is much faster than appending with `--noflush`, which
/// iptables-nft 1.8.9 makes quadratic (110,000 kube-proxy rules: 271 s against ~3 s).
fn merge_restore(texts: &[String]) -> String {
    let mut tables: Vec<(String, String)> = Vec::new();
    for text in texts {
        let mut cur: Option<usize> = None;
        for line in text.lines() {
            if let Some(t) = line.strip_prefix('*') {
                cur = Some(if let Some(i) = tables.iter().position(|(n, _)| n == t) {
                    i
                } else {
                    tables.push((t.to_owned(), String::new()));
                    tables.len() - 1
                });
            } else if line == "COMMIT" {
                cur = None;
            } else if let Some(i) = cur {
                tables[i].1.push_str(line);
                tables[i].1.push('\n');
            }
        }
    }
    let mut out = String::new();
    for (t, body) in tables {
        out.push('*');
        out.push_str(&t);
        out.push('\n');
        out.push_str(&body);
        out.push_str("COMMIT\n");
    }
    out
}

fn install_rules(node: &Path, plan: &Plan) -> anyhow::Result<()> {
    let mut restore = Vec::new();
    if plan.docker_rules {
        restore.push(rules::docker_rules(plan));
    }
    let cfg = crate::services::rules::Config {
        cluster_cidr: Some(format!("{}/{}", plan.subnet.0, plan.subnet.1)),
        service_cidr: Some(format!("{}/{}", plan.service_cidr.0, plan.service_cidr.1)),
    };
    if let Some(mode) = plan.kube_proxy {
        prepare_kube_node(node, plan, mode)?;
        if mode == KubeProxy::Iptables {
            restore.push(crate::services::rules::iptables(&plan.services, &cfg));
        }
    }
    if !restore.is_empty() {
        feed(
            node,
            plan,
            "iptables-restore",
            &[],
            &merge_restore(&restore),
        )?;
    }
    if plan.kube_proxy == Some(KubeProxy::Nftables) {
        feed(
            node,
            plan,
            "nft",
            &["-f", "-"],
            &crate::services::rules::nftables(&plan.services, &cfg),
        )?;
    }
    Ok(())
}

/// What a kubelet node has around kube-proxy's rules.
fn prepare_kube_node(node: &Path, plan: &Plan, mode: KubeProxy) -> anyhow::Result<()> {
    // What a kubelet node has: bridged pod traffic goes through netfilter (so a reply from a
    // backend to a client on the same bridge is un-DNATed), and in iptables mode
    // localhost NodePorts (route_localnet).
    run_in(node, || -> std::io::Result<()> {
        sysctl("net/bridge/bridge-nf-call-iptables", "1")?;
        // The ServiceCIDR route below points back out of the bridge; an ICMP redirect there
        // would use up the per-host ICMP budget the REJECT of a Service without endpoints
        // needs (the client would time out instead of being refused).
        sysctl("net/ipv4/conf/all/send_redirects", "0")?;
        sysctl(
            &format!("net/ipv4/conf/{}/send_redirects", plan.bridge),
            "0",
        )?;
        if mode == KubeProxy::Iptables {
            sysctl("net/ipv4/conf/all/route_localnet", "1")?;
        }
        Ok(())
    })??;
    // Unanswered ClusterIPs (no endpoints, unallocated) must reach the filter hooks, as they
    // do on a node with a default route, instead of dying in the routing lookup.
    feed(
        node,
        plan,
        "ip",
        &[
            "route",
            "add",
            &format!("{}/{}", plan.service_cidr.0, plan.service_cidr.1),
            "dev",
            &plan.bridge,
        ],
        "",
    )
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

/// Runs `argv` as a process of `workload`: in its namespace and its cgroup (like
/// `docker exec`). Only returns on error.
pub fn exec(rec: &LabRecord, workload: &str, argv: &[String]) -> anyhow::Error {
    let Some(w) = rec.workloads.iter().find(|w| w.name == workload) else {
        return anyhow::anyhow!(
            "lab '{}' has no workload '{workload}' (it has: {})",
            rec.lab,
            rec.workloads
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let Some((prog, args)) = argv.split_first() else {
        return anyhow::anyhow!("no command given after --");
    };
    let run = || -> anyhow::Result<std::convert::Infallible> {
        let cg = w.cgroup.as_deref().context("workload has no cgroup")?;
        std::fs::write(
            Path::new(cg).join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .with_context(|| format!("joining cgroup {cg}"))?;
        let mut c = netns::command_in(&netns::named(&w.netns), prog)?;
        c.args(args);
        Err(anyhow::Error::from(c.exec()).context(format!("running {prog}")))
    };
    match run() {
        Err(e) => e,
        Ok(never) => match never {},
    }
}
