//! `service` records (kube-proxy's Services as read back from a node's rules: frontend,
//! endpoints, chains) and one `ipvs` record per node (whether IPVS mode is in use).
use std::io::Write;

use serde::Serialize;

use super::{Printer, Table};
use crate::services::{ServiceEntry, read::NodeServices};

#[derive(Serialize)]
struct Line<'a> {
    node: &'a str,
    #[serde(flatten)]
    entry: &'a ServiceEntry,
}

#[derive(Serialize)]
struct Ipvs<'a> {
    node: &'a str,
    state: &'a str,
}

/// The Services of each node (only those `keep` accepts).
pub fn render<W: Write>(
    p: &mut Printer<W>,
    nodes: &[NodeServices],
    keep: impl Fn(&ServiceEntry) -> bool,
) -> std::io::Result<()> {
    let mut t = Table::new(&[
        "NODE",
        "MODE",
        "SERVICE",
        "FRONTEND",
        "NODEPORT",
        "ENDPOINTS",
        "CHAIN",
    ]);
    for n in nodes {
        for e in n.table.services.iter().filter(|e| keep(e)) {
            if p.json() {
                p.record(
                    "service",
                    &Line {
                        node: &n.node.name,
                        entry: e,
                    },
                )?;
                continue;
            }
            t.row(vec![
                n.node.name.clone(),
                e.mode.into(),
                e.spn(),
                e.cluster_ip.map_or_else(
                    || "-".into(),
                    |ip| format!("{ip}:{}/{}", e.port, e.protocol),
                ),
                e.node_port.map_or_else(|| "-".into(), |p| p.to_string()),
                if e.endpoints.is_empty() {
                    format!("none ({})", e.no_endpoints)
                } else {
                    e.endpoints.join(",")
                },
                e.chain.clone(),
            ]);
        }
        if p.json() {
            p.record(
                "ipvs",
                &Ipvs {
                    node: &n.node.name,
                    state: &n.ipvs,
                },
            )?;
        } else {
            eprintln!("{}: {}", n.node.name, n.ipvs);
        }
    }
    if !p.json() {
        p.text(&t.render())?;
    }
    Ok(())
}
