//! `inspector topology`: the node's map. First each container, pod or lab workload with its
//! network mode, namespace, veth pair (both ends, both ifindexes), bridge, addresses, routes
//! and published ports; then every namespace with its links. Table, JSON lines, or Graphviz.
use serde::Serialize;

use super::common::{self, IdentityArgs};
use crate::{
    identity::map::{self, WorkloadView},
    output::{self, Format},
    probe::preflight,
    topology::{self, Link, NsidCache, Topology},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this namespace (inode, name, docker:<id>, "host" or path). Repeatable.
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

#[derive(Serialize)]
struct PeerRef {
    netns: u64,
    netns_name: String,
    ifindex: u32,
    ifname: String,
}

#[derive(Serialize)]
struct LinkOut<'a> {
    #[serde(flatten)]
    link: &'a Link,
    master_name: Option<String>,
    peer: Option<PeerRef>,
}

#[derive(Serialize)]
struct NsOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    netns: u64,
    name: &'a str,
    netns_kind: &'a topology::NetnsKind,
    path: String,
    links: Vec<LinkOut<'a>>,
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    let all = topology::netns::discover();
    let mut want = Vec::new();
    for spec in &a.netns {
        want.push(common::resolve_netns(spec, &all)?.inode);
    }
    let topo = topology::scan(&mut NsidCache::default());
    let tracker = a.identity.tracker();
    let workloads: Vec<WorkloadView> = map::build(&tracker.identity, &topo)
        .into_iter()
        .filter(|w| want.is_empty() || w.netns.is_some_and(|n| want.contains(&n)))
        .collect();
    if fmt == Format::Dot {
        print!("{}", dot(&topo, &workloads, &want));
        return Ok(());
    }
    for w in &workloads {
        match fmt {
            Format::Json => output::json_line(w)?,
            _ => print_workload(w),
        }
    }
    for ns in topo
        .namespaces
        .iter()
        .filter(|n| want.is_empty() || want.contains(&n.netns.inode))
    {
        let links: Vec<LinkOut<'_>> = ns
            .links
            .iter()
            .map(|l| LinkOut {
                link: l,
                master_name: l
                    .master
                    .and_then(|m| ns.links.iter().find(|x| x.ifindex == m))
                    .map(|b| b.name.clone()),
                peer: peer_of(&topo, ns.netns.inode, l),
            })
            .collect();
        let out = NsOut {
            kind: "netns",
            netns: ns.netns.inode,
            name: &ns.netns.name,
            netns_kind: &ns.netns.kind,
            path: ns.netns.path.display().to_string(),
            links,
        };
        match fmt {
            Format::Json => output::json_line(&out)?,
            _ => print_ns(&out),
        }
    }
    Ok(())
}

fn peer_of(topo: &Topology, inode: u64, l: &Link) -> Option<PeerRef> {
    let (pns, pidx) = topo.peers.get(&(inode, l.ifindex)).copied()?;
    let (ns, link) = topo.link((pns, pidx))?;
    Some(PeerRef {
        netns: pns,
        netns_name: ns.netns.name.clone(),
        ifindex: pidx,
        ifname: link.name.clone(),
    })
}

fn print_ns(n: &NsOut<'_>) {
    println!("netns {} (inode {}, {})", n.name, n.netns, n.path);
    for l in &n.links {
        let mut parts = vec![
            format!("{:>3}: {:<16}", l.link.ifindex, l.link.name),
            map::kind_str(&l.link.kind),
        ];
        parts.push(if l.link.up {
            l.link.oper_state.clone()
        } else {
            "down".into()
        });
        if let Some(m) = &l.master_name {
            parts.push(format!("port of {m}"));
        }
        if let Some(p) = &l.peer {
            parts.push(format!(
                "peer {}/{} (ifindex {})",
                p.netns_name, p.ifname, p.ifindex
            ));
        } else if l.link.kind == topology::LinkKind::Veth {
            parts.push("peer not visible".into());
        }
        if !l.link.addrs.is_empty() {
            parts.push(
                l.link
                    .addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        println!("  {}", parts.join("  "));
    }
}

fn print_workload(w: &WorkloadView) {
    let kind = w.kind.map_or("", |k| k.as_str());
    let mode = crate::identity::mode_label(w.network_mode.as_deref());
    println!(
        "{kind} {} ({} {mode}, id {})",
        w.name,
        w.runtime,
        crate::identity::short_id(&w.id)
    );
    if let Some(s) = &w.shares_netns_with {
        println!("  shares the network namespace of {s}");
    }
    match (&w.netns_name, w.netns) {
        (Some(n), Some(i)) => println!("  netns {n} (inode {i})"),
        (None, Some(i)) => println!("  netns inode {i}"),
        _ => println!("  netns unknown"),
    }
    for i in &w.interfaces {
        let mut parts = vec![format!("{} (ifindex {}, {})", i.name, i.ifindex, i.kind)];
        if !i.addrs.is_empty() {
            parts.push(i.addrs.join(" "));
        }
        if let Some(p) = &i.peer {
            parts.push(format!(
                "<-> {}/{} (ifindex {}){}",
                p.netns_name,
                p.ifname,
                p.ifindex,
                p.bridge
                    .as_ref()
                    .map(|b| format!(" port of {b}"))
                    .unwrap_or_default()
            ));
        }
        println!("  if {}", parts.join("  "));
    }
    for r in w.routes.iter().filter(|r| !r.dst.starts_with("fe80")) {
        println!(
            "  route {}{}{}",
            r.dst,
            r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
            r.dev
                .as_ref()
                .map(|d| format!(" dev {d}"))
                .unwrap_or_default()
        );
    }
    for p in &w.ports {
        println!(
            "  publishes {}:{}/{} -> {}",
            p.host_ip.map_or_else(|| "*".to_owned(), |i| i.to_string()),
            p.host_port,
            p.proto,
            p.container_port
        );
    }
    println!();
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz: a cluster per namespace (labelled with the workloads living in it), a node per
/// interface, veth pairs as plain edges, bridge ports as dashed edges to their bridge.
fn dot(topo: &Topology, workloads: &[WorkloadView], want: &[u64]) -> String {
    use std::fmt::Write as _;
    let mut s =
        String::from("digraph inspector {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
    let id = |ns: u64, ifindex: u32| format!("n{ns}_{ifindex}");
    for ns in topo
        .namespaces
        .iter()
        .filter(|n| want.is_empty() || want.contains(&n.netns.inode))
    {
        let owners: Vec<String> = workloads
            .iter()
            .filter(|w| w.netns == Some(ns.netns.inode))
            .map(|w| {
                esc(&format!(
                    "{} ({})",
                    w.name,
                    w.network_mode.as_deref().unwrap_or("?")
                ))
            })
            .collect();
        let label = std::iter::once(esc(&ns.netns.name))
            .chain(owners)
            .collect::<Vec<_>>()
            .join("\\n");
        let _ = writeln!(
            s,
            "  subgraph cluster_{} {{\n    label=\"{label}\";",
            ns.netns.inode
        );
        for l in &ns.links {
            let addrs: Vec<String> = l.addrs.iter().map(ToString::to_string).collect();
            let shape = if l.kind == topology::LinkKind::Bridge {
                "ellipse"
            } else {
                "box"
            };
            let _ = writeln!(
                s,
                "    {} [label=\"{}\\n{}\", shape={shape}];",
                id(ns.netns.inode, l.ifindex),
                esc(&l.name),
                esc(&addrs.join(" "))
            );
        }
        s.push_str("  }\n");
        for l in &ns.links {
            if let Some(m) = l.master {
                let _ = writeln!(
                    s,
                    "  {} -> {} [style=dashed, arrowhead=none];",
                    id(ns.netns.inode, l.ifindex),
                    id(ns.netns.inode, m)
                );
            }
        }
    }
    let mut done = std::collections::HashSet::new();
    for (a, b) in &topo.peers {
        if done.contains(&(*b, *a)) || !done.insert((*a, *b)) {
            continue;
        }
        let _ = writeln!(
            s,
            "  {} -> {} [arrowhead=none, label=\"veth\"];",
            id(a.0, a.1),
            id(b.0, b.1)
        );
    }
    s.push_str("}\n");
    s
}
