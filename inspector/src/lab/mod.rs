//! Labs: reproducible topologies in network namespaces, built through rtnetlink.
//!
//! `modes` is the four-mode lab (Docker's bridge, host, none and container modes with
//! Docker's rules; `inspector lab`, the demo). The plain bridge lab here, used by the
//! overhead benchmark, is a "node" namespace holding a Linux bridge, one namespace per workload
//! joined to the bridge by a veth pair (eth0 inside, a port on the bridge outside), and
//! optionally an "external" namespace routed through the node. Nothing is created in the
//! namespace the inspector runs in. Every address must lie in 198.18.0.0/15.
pub mod modes;
pub mod netlink;
pub mod rules;
pub mod spec;

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
    path::PathBuf,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::sys::netns::{self, run_in};
use netlink::{Nl, sysctl};

/// A workload namespace on the bridge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    /// CIDR, e.g. 198.18.0.2/24.
    pub addr: String,
}

/// A namespace reached through the node by routing (not bridging).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct External {
    pub name: String,
    /// The node's end of the link, e.g. 198.18.1.1/24.
    pub node_addr: String,
    /// The external namespace's address, e.g. 198.18.1.2/24.
    pub addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BridgeLabSpec {
    /// Prefix of every namespace name (keep it short: interface names derive from it).
    pub prefix: String,
    pub bridge: String,
    pub bridge_addr: String,
    pub workloads: Vec<Workload>,
    pub external: Option<External>,
    /// Switch IPv6 off on every lab link (no router/neighbour solicitations in counts).
    #[serde(default)]
    pub disable_ipv6: bool,
}

fn cidr(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("lab address '{s}' needs a /prefix"))?;
    let a: Ipv4Addr = a
        .parse()
        .with_context(|| format!("lab address '{s}' is not IPv4"))?;
    let p: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .with_context(|| format!("lab address '{s}': bad prefix"))?;
    // 198.18.0.0/15 only: the benchmarking range, never routed anywhere real.
    if a.octets()[0] != 198 || a.octets()[1] & 0xfe != 18 {
        bail!("lab address '{s}' is outside 198.18.0.0/15, the only range labs may use");
    }
    Ok((a, p))
}

impl BridgeLabSpec {
    pub fn node_ns(&self) -> String {
        format!("{}-node", self.prefix)
    }

    pub fn ns_of(&self, workload: &str) -> String {
        format!("{}-{workload}", self.prefix)
    }

    /// Checks names and addresses before anything is created.
    pub fn validate(&self) -> anyhow::Result<()> {
        cidr(&self.bridge_addr)?;
        for w in &self.workloads {
            cidr(&w.addr)?;
            if format!("v-{}", w.name).len() > 15 {
                bail!(
                    "workload name '{}' is too long (interface names are limited to 15 bytes)",
                    w.name
                );
            }
        }
        if let Some(e) = &self.external {
            cidr(&e.node_addr)?;
            cidr(&e.addr)?;
        }
        if self.bridge.len() > 15 {
            bail!("bridge name '{}' is too long", self.bridge);
        }
        Ok(())
    }
}

/// A lab that exists; dropping it removes every namespace it made (and with them every link).
pub struct Lab {
    pub spec: BridgeLabSpec,
    namespaces: Vec<String>,
}

impl Lab {
    /// Builds the lab. On any failure what was made so far is removed again.
    pub fn up(spec: &BridgeLabSpec) -> anyhow::Result<Self> {
        spec.validate()?;
        let mut lab = Self {
            spec: spec.clone(),
            namespaces: Vec::new(),
        };
        lab.build().inspect_err(|_| lab.down())?;
        Ok(lab)
    }

    #[must_use]
    pub fn ns_names(&self) -> &[String] {
        &self.namespaces
    }

    fn new_ns(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let p = netns::create(name)?;
        self.namespaces.push(name.to_owned());
        let v6 = self.spec.disable_ipv6;
        run_in(&p, move || -> std::io::Result<()> {
            if v6 {
                sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
                sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
            }
            // Let root use ICMP datagram sockets (traffic::ping) in lab namespaces.
            sysctl("net/ipv4/ping_group_range", "0 0")?;
            Nl::new()?.up("lo")
        })??;
        Ok(p)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let s = self.spec.clone();
        let node = self.new_ns(&s.node_ns())?;
        let (br_ip, br_len) = cidr(&s.bridge_addr)?;
        run_in(&node, || -> std::io::Result<()> {
            let nl = Nl::new()?;
            nl.bridge(&s.bridge)?;
            nl.add_addr(&s.bridge, IpAddr::V4(br_ip), br_len)?;
            nl.up(&s.bridge)?;
            sysctl("net/ipv4/ip_forward", "1")
        })??;
        for w in &s.workloads {
            let p = self.new_ns(&s.ns_of(&w.name))?;
            let (ip, len) = cidr(&w.addr)?;
            let host_if = format!("v-{}", w.name);
            let fd = std::fs::File::open(&p)?;
            run_in(&node, || -> std::io::Result<()> {
                let nl = Nl::new()?;
                nl.veth(&host_if, "eth0", Some(fd.as_raw_fd()))?;
                nl.set_master(&host_if, &s.bridge)?;
                nl.up(&host_if)
            })??;
            run_in(&p, || -> std::io::Result<()> {
                let nl = Nl::new()?;
                nl.add_addr("eth0", IpAddr::V4(ip), len)?;
                nl.up("eth0")?;
                nl.route_v4(Ipv4Addr::UNSPECIFIED, 0, br_ip)
            })??;
        }
        if let Some(e) = &s.external {
            let p = self.new_ns(&s.ns_of(&e.name))?;
            let (node_ip, node_len) = cidr(&e.node_addr)?;
            let (ip, len) = cidr(&e.addr)?;
            let fd = std::fs::File::open(&p)?;
            let node_if = format!("x-{}", e.name);
            run_in(&node, || -> std::io::Result<()> {
                let nl = Nl::new()?;
                nl.veth(&node_if, "eth0", Some(fd.as_raw_fd()))?;
                nl.add_addr(&node_if, IpAddr::V4(node_ip), node_len)?;
                nl.up(&node_if)
            })??;
            run_in(&p, || -> std::io::Result<()> {
                let nl = Nl::new()?;
                nl.add_addr("eth0", IpAddr::V4(ip), len)?;
                nl.up("eth0")?;
                nl.route_v4(Ipv4Addr::UNSPECIFIED, 0, node_ip)
            })??;
        }
        Ok(())
    }

    /// Removes every namespace the lab made (idempotent).
    pub fn down(&mut self) {
        for n in self.namespaces.drain(..).rev() {
            let _ = netns::delete(&n);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}
