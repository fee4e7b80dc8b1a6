//! Which netfilter rule dropped or rejected packets: `iptables-save -c` before and after,
//! and the DROP/REJECT rules whose packet counters grew in between. (nftables rules carry no
//! counters unless written with one; kube-proxy's don't, so its rejects are named from the
//! service table instead.)
use std::{collections::HashMap, path::Path};

use serde::Serialize;

/// Packet counters of every DROP/REJECT rule, by (table, rule text without counters).
#[derive(Clone, Debug, Default)]
pub struct RuleCounters(HashMap<(String, String), u64>);

/// A rule whose counter grew: where the packet died.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleHit {
    pub table: String,
    pub chain: String,
    /// The rule as iptables-save prints it.
    pub rule: String,
    pub packets: u64,
    /// The node namespace whose rule it is (`host`, a lab's node), when read from several.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// Reads the counters in `netns` (None: here). Empty when iptables is unavailable.
#[must_use]
pub fn snapshot(netns: Option<&Path>) -> RuleCounters {
    let mut m = HashMap::new();
    let out = match netns {
        Some(p) => {
            crate::sys::netns::command_in(p, "iptables-save").and_then(|mut c| c.arg("-c").output())
        }
        None => std::process::Command::new("iptables-save")
            .arg("-c")
            .output(),
    };
    let Ok(out) = out else {
        return RuleCounters(m);
    };
    let mut table = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = line.strip_prefix('*') {
            t.clone_into(&mut table);
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((counts, rule)) = rest.split_once("] ") else {
            continue;
        };
        if !(rule.contains(" -j DROP") || rule.contains(" -j REJECT")) {
            continue;
        }
        let packets = counts
            .split(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        m.insert((table.clone(), rule.to_owned()), packets);
    }
    RuleCounters(m)
}

impl RuleCounters {
    /// DROP/REJECT rules that counted packets since `before`.
    #[must_use]
    pub fn grown_since(&self, before: &Self) -> Vec<RuleHit> {
        let mut v: Vec<RuleHit> = self
            .0
            .iter()
            .filter_map(|((table, rule), now)| {
                let was = before
                    .0
                    .get(&(table.clone(), rule.clone()))
                    .copied()
                    .unwrap_or(0);
                (*now > was).then(|| RuleHit {
                    table: table.clone(),
                    chain: rule
                        .strip_prefix("-A ")
                        .and_then(|r| r.split(' ').next())
                        .unwrap_or("")
                        .to_owned(),
                    rule: rule.clone(),
                    packets: now - was,
                    node: String::new(),
                })
            })
            .collect();
        v.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.rule.cmp(&b.rule)));
        v
    }
}
