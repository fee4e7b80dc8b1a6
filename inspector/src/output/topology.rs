//! `inspector topology`: `workload` records (each container, pod or lab workload with its
//! mode, namespace, veth pairs, bridge, addresses, routes and published ports), then
//! `netns` records (every namespace and its links); or one Graphviz graph.
use std::{fmt::Write as _, io::Write};

use super::{Format, Printer};
use crate::{
    identity::map::WorkloadView,
    topology::{LinkKind, Topology, view::NetnsView},
};

pub fn render<W: Write>(
    p: &mut Printer<W>,
    workloads: &[WorkloadView],
    namespaces: &[NetnsView],
    topo: &Topology,
) -> std::io::Result<()> {
    match p.fmt {
        Format::Dot => p.text(&dot(topo, workloads, namespaces)),
        Format::Json => {
            for w in workloads {
                p.record("workload", w)?;
            }
            for n in namespaces {
                p.record("netns", n)?;
            }
            Ok(())
        }
        Format::Table => {
            for w in workloads {
                p.text(&workload_text(w))?;
            }
            for n in namespaces {
                p.text(&netns_text(n))?;
            }
            Ok(())
        }
    }
}

fn netns_text(n: &NetnsView) -> String {
    let mut s = format!("netns {} (inode {}, {})\n", n.name, n.netns, n.path);
    for l in &n.links {
        let mut parts = vec![
            format!("{:>3}: {:<16}", l.link.ifindex, l.link.name),
            l.link.kind.to_string(),
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
        } else if l.link.kind == LinkKind::Veth {
            parts.push("peer not visible".into());
        }
        if !l.link.addrs.is_empty() {
            let addrs: Vec<String> = l.link.addrs.iter().map(ToString::to_string).collect();
            parts.push(addrs.join(" "));
        }
        let _ = writeln!(s, "  {}", parts.join("  "));
    }
    s
}

/// A route for people: "dst via gw dev d".
#[must_use]
pub fn route_text(r: &crate::identity::map::RouteView) -> String {
    format!(
        "{}{}{}",
        r.dst,
        r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
        r.dev
            .as_ref()
            .map(|d| format!(" dev {d}"))
            .unwrap_or_default()
    )
}

fn workload_text(w: &WorkloadView) -> String {
    let kind = w.kind.map_or("", |k| k.as_str());
    let mode = crate::identity::mode_label(w.network_mode.as_deref());
    let mut s = format!(
        "{kind} {} ({} {mode}, id {})\n",
        w.name,
        w.runtime,
        crate::identity::short_id(&w.id)
    );
    if let Some(t) = &w.shares_netns_with {
        let _ = writeln!(s, "  shares the network namespace of {t}");
    }
    let _ = match (&w.netns_name, w.netns) {
        (Some(n), Some(i)) => writeln!(s, "  netns {n} (inode {i})"),
        (None, Some(i)) => writeln!(s, "  netns inode {i}"),
        _ => writeln!(s, "  netns unknown"),
    };
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
        let _ = writeln!(s, "  if {}", parts.join("  "));
    }
    for r in w.routes.iter().filter(|r| !r.dst.starts_with("fe80")) {
        let _ = writeln!(s, "  route {}", route_text(r));
    }
    for p in &w.ports {
        let _ = writeln!(
            s,
            "  publishes {}:{}/{} -> {}",
            p.host_ip.map_or_else(|| "*".to_owned(), |i| i.to_string()),
            p.host_port,
            p.proto,
            p.container_port
        );
    }
    s.push('\n');
    s
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz: a cluster per namespace (labelled with the workloads living in it), a node per
/// interface, veth pairs as plain edges, bridge ports as dashed edges to their bridge.
fn dot(topo: &Topology, workloads: &[WorkloadView], namespaces: &[NetnsView]) -> String {
    let mut s =
        String::from("digraph inspector {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
    let id = |ns: u64, ifindex: u32| format!("n{ns}_{ifindex}");
    for ns in namespaces {
        let owners: Vec<String> = workloads
            .iter()
            .filter(|w| w.netns == Some(ns.netns))
            .map(|w| {
                esc(&format!(
                    "{} ({})",
                    w.name,
                    w.network_mode.as_deref().unwrap_or("?")
                ))
            })
            .collect();
        let label = std::iter::once(esc(&ns.name))
            .chain(owners)
            .collect::<Vec<_>>()
            .join("\\n");
        let _ = writeln!(
            s,
            "  subgraph cluster_{} {{\n    label=\"{label}\";",
            ns.netns
        );
        for l in &ns.links {
            let addrs: Vec<String> = l.link.addrs.iter().map(ToString::to_string).collect();
            let shape = if l.link.kind == LinkKind::Bridge {
                "ellipse"
            } else {
                "box"
            };
            let _ = writeln!(
                s,
                "    {} [label=\"{}\\n{}\", shape={shape}];",
                id(ns.netns, l.link.ifindex),
                esc(&l.link.name),
                esc(&addrs.join(" "))
            );
        }
        s.push_str("  }\n");
        for l in &ns.links {
            if let Some(m) = l.link.master {
                let _ = writeln!(
                    s,
                    "  {} -> {} [style=dashed, arrowhead=none];",
                    id(ns.netns, l.link.ifindex),
                    id(ns.netns, m)
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
