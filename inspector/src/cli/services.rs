//! `inspector services`: the node's Kubernetes Services as kube-proxy programmed them, read
//! from the live rules (iptables nat/filter tables and the nftables table `ip kube-proxy`) of
//! the host and of every lab node (or one chosen with `--lab`).
use anyhow::bail;
use serde::Serialize;

use crate::{
    output::{self, Format, Table},
    probe::preflight,
    services::{ServiceEntry, read},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this lab's node namespace (default: the host and every lab node).
    #[arg(long)]
    pub lab: Option<String>,
    /// Only Services named NAMESPACE/NAME.
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    node: &'a str,
    #[serde(flatten)]
    entry: &'a ServiceEntry,
}

/// The nodes `--lab` selects (all when None).
///
/// # Errors
/// A lab that does not exist.
pub fn nodes(lab: Option<&str>) -> anyhow::Result<Vec<read::Node>> {
    let all = read::nodes();
    match lab {
        None => Ok(all),
        Some(l) => {
            let want = format!("{l}-node");
            let v: Vec<_> = all.into_iter().filter(|n| n.name == want).collect();
            if v.is_empty() {
                bail!("no lab called '{l}' is up (see `inspector lab status`)");
            }
            Ok(v)
        }
    }
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    if let Some(s) = &a.service {
        super::common::check_service_name(s)?;
    }
    let mut t = Table::new(&[
        "NODE",
        "MODE",
        "SERVICE",
        "FRONTEND",
        "NODEPORT",
        "ENDPOINTS",
        "CHAIN",
    ]);
    for node in nodes(a.lab.as_deref())? {
        let table = read::load(node.netns.as_deref())?;
        let ipvs = read::ipvs_state(node.netns.as_deref());
        for e in table
            .services
            .iter()
            .filter(|e| a.service.as_ref().is_none_or(|s| &e.ns_name() == s))
        {
            match fmt {
                Format::Json => output::json_line(&Line {
                    kind: "service",
                    node: &node.name,
                    entry: e,
                })?,
                Format::Table | Format::Dot => t.row(vec![
                    node.name.clone(),
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
                ]),
            }
        }
        match fmt {
            Format::Json => output::json_line(&serde_json::json!({
                "type": "ipvs", "node": node.name, "state": ipvs,
            }))?,
            _ => eprintln!("{}: {ipvs}", node.name),
        }
    }
    if fmt != Format::Json {
        print!("{}", t.render());
    }
    Ok(())
}
