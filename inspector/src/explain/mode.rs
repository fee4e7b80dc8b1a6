//! The paragraph that says what a workload's network mode is, with its own objects.
use super::Bridged;
use crate::identity::map::WorkloadView;

/// Host mode: the node's namespace, nothing of its own.
pub(super) fn host(view: &WorkloadView, ns_name: &str) -> String {
    format!(
        "host mode: no network namespace of its own - it shares {ns_name} (inode {}): its \
         interfaces, routes and port space. No veth, no bridge, no rules are made for it; its \
         packets take the node's own path (NIC -> PREROUTING -> INPUT -> socket). The \
         inspector tells its traffic from the node's by the socket's owner (its cgroup).",
        view.netns.unwrap_or_default()
    )
}

/// None mode: a namespace with loopback only.
pub(super) fn none(view: &WorkloadView, ns_name: &str) -> String {
    format!(
        "none mode: a network namespace of its own ({ns_name}, inode {}) with only the \
         loopback device{}: no links, no routes, no rules. No packet can leave it; its traffic \
         is on lo only.",
        view.netns.unwrap_or_default(),
        view.interfaces
            .first()
            .map(|l| format!(" ({})", l.addrs.join(" ")))
            .unwrap_or_default()
    )
}

/// Bridge mode, or container mode (another workload's namespace, and so its bridge).
pub(super) fn bridged(b: &Bridged<'_>) -> String {
    let (view, eth, peer, ns_name) = (b.view, b.eth, b.peer, b.ns_name);
    match &view.shares_netns_with {
        Some(t) => format!(
            "container mode: no namespace of its own - it joined {t}'s ({ns_name}, inode {}), \
             so it has {t}'s interfaces ({} {}), routes and port space. No link or rule was \
             made for it. Traffic between it and {t} goes over lo; everything else follows \
             {t}'s bridge path below. The inspector tells the two apart by socket owner.",
            view.netns.unwrap_or_default(),
            eth.name,
            eth.addrs.join(" ")
        ),
        None => format!(
            "bridge mode: a namespace of its own ({ns_name}, inode {}) whose {} ({}, ifindex {}) \
             is one end of a veth pair; the other end, {} (ifindex {}) in {}, is a port of the \
             bridge {} ({}). Default route via the bridge's address. Docker's rules in {} \
             decide what may cross: see the rules below.",
            view.netns.unwrap_or_default(),
            eth.name,
            eth.addrs.join(" "),
            eth.ifindex,
            peer.ifname,
            peer.ifindex,
            peer.netns_name,
            b.bridge,
            b.gw,
            peer.netns_name
        ),
    }
}
