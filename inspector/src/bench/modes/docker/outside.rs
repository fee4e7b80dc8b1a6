//! The client of the published-port mode: a namespace of the run's own outside every Docker
//! bridge, wired to the node by a routed veth pair (as a machine on the node's network would
//! be), so its connections to the node's address go through Docker's DNAT and FORWARD rules
//! and over docker0 - not through docker-proxy, which only serves the node's own traffic.
use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
};

use crate::{bench::BenchError, lab::netlink::Nl, sys::netns};

/// The node's end of the pair, and the client's.
pub(super) const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 127, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 127, 2);
const PREFIX: &str = "insp-bo";

/// The namespace and its link; removed on drop.
pub(super) struct Outside {
    pub ns: String,
    node_if: String,
}

/// The namespace's name and the node's end of the pair (the client's end is `obo<pid>`: a
/// peer is made on the node before it moves, where an `eth0` may exist).
fn name_of(pid: u32) -> (String, String) {
    (format!("{PREFIX}{pid}"), format!("ibo{pid}"))
}

/// Removes what a run that was killed left (its process gone).
pub(super) fn remove_stale() {
    for ns in netns::list_with_prefix(PREFIX) {
        let Some(pid) = ns.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            drop(Outside {
                ns,
                node_if: name_of(pid).1,
            });
        }
    }
}

/// Makes the namespace: its end 198.18.127.2/30, default route via the node's 198.18.127.1.
pub(super) fn up() -> Result<Outside, BenchError> {
    let (ns, node_if) = name_of(std::process::id());
    let path = netns::create(&ns).map_err(BenchError::io("the outside client's namespace"))?;
    let me = Outside { ns, node_if };
    let peer = format!("obo{}", std::process::id());
    let wire = || -> std::io::Result<()> {
        let fd = std::fs::File::open(&path)?;
        let nl = Nl::new()?;
        nl.veth(&me.node_if, &peer, Some(fd.as_raw_fd()))?;
        nl.add_addr(&me.node_if, IpAddr::V4(NODE_IP), 30)?;
        nl.up(&me.node_if)?;
        netns::run_in(&path, || -> std::io::Result<()> {
            let nl = Nl::new()?;
            nl.up("lo")?;
            nl.add_addr(&peer, IpAddr::V4(CLIENT_IP), 30)?;
            nl.up(&peer)?;
            nl.route_v4(Ipv4Addr::UNSPECIFIED, 0, NODE_IP)
        })?
    };
    wire().map_err(BenchError::io("wiring the outside client"))?;
    Ok(me)
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Ok(nl) = Nl::new() {
            let _ = nl.delete(&self.node_if);
        }
        let _ = netns::delete(&self.ns);
    }
}
