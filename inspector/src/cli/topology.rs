//! `inspector topology`: every namespace with its links, veth peers (across namespaces),
//! bridge membership and addresses.
use serde::Serialize;

use super::common;
use crate::{
    output::{self, Format},
    probe::preflight,
    topology::{self, Link, NsidCache, Topology},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this namespace (inode, name, docker:<id>, "host" or path). Repeatable.
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,
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
            Format::Table => print_ns(&out),
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
            kind_str(&l.link.kind),
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

fn kind_str(k: &topology::LinkKind) -> String {
    match k {
        topology::LinkKind::Veth => "veth".into(),
        topology::LinkKind::Bridge => "bridge".into(),
        topology::LinkKind::Loopback => "loopback".into(),
        topology::LinkKind::Device => "device".into(),
        topology::LinkKind::Other(s) => s.clone(),
    }
}
