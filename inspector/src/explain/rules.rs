//! The iptables rules that decide a workload's paths, from `iptables-save` in the bridge's
//! namespace.
use super::Bridged;
use crate::net::Cidr;

/// `iptables-save` of a namespace, each rule prefixed with its table ("nat: -A ...").
pub(super) fn iptables_in(ns_path: &std::path::Path) -> Vec<String> {
    let Ok(out) =
        crate::sys::netns::command_in(ns_path, "iptables-save").and_then(|mut c| c.output())
    else {
        return Vec::new();
    };
    let mut table = String::new();
    let mut v = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = l.strip_prefix('*') {
            t.clone_into(&mut table);
        } else if l.starts_with("-A ") {
            v.push(format!("{table}: {l}"));
        }
    }
    v
}

/// Rules naming the workload's address; else rules naming its subnet or bridge but no other
/// workload's address.
pub(super) fn naming(b: &Bridged<'_>) -> Vec<String> {
    let subnet = b.subnet.map(|s| s.to_string());
    b.all_rules
        .iter()
        .filter(|r| {
            let mine = b
                .ip
                .is_some_and(|ip| r.contains(&format!("{ip}/32")) || r.contains(&format!("{ip}:")));
            mine || (!r.contains("/32 ")
                && !r.contains("--to-destination")
                && (subnet.as_ref().is_some_and(|s| r.contains(s.as_str()))
                    || (!b.bridge.is_empty() && r.contains(&format!(" {} ", b.bridge)))))
        })
        .cloned()
        .collect()
}

/// The MASQUERADE rules whose source network holds the workload's address.
pub(super) fn masquerading(b: &Bridged<'_>) -> Vec<String> {
    b.all_rules
        .iter()
        .filter(|r| {
            r.contains("MASQUERADE")
                && b.ip.is_some_and(|ip| {
                    r.split_whitespace()
                        .skip_while(|t| *t != "-s")
                        .nth(1)
                        .and_then(|s| Cidr::parse(s).ok())
                        .is_some_and(|s| s.contains(ip))
                })
        })
        .cloned()
        .collect()
}

/// The DNAT rules of a published port (`host_port` -> the workload's `container_port`).
pub(super) fn dnat(b: &Bridged<'_>, host_port: u16, container_port: u16) -> Vec<String> {
    b.all_rules
        .iter()
        .filter(|r| {
            r.contains("DNAT")
                && r.contains(&format!("--dport {host_port} "))
                && b.ip
                    .is_some_and(|ip| r.contains(&format!("{ip}:{container_port}")))
        })
        .cloned()
        .collect()
}
