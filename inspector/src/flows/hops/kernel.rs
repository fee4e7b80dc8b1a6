//! Latency rows from the kernel's per-hop histograms (`inspector_common::hop`).
use inspector_common::{
    PacketEvent,
    hop::{HopHist, HopTag, hop_bucket_value},
    parse::ETH_P_IP,
};

use super::{LatencyRow, order::path_order};

/// A transition's three ends as events to name it by: the pair (addresses and protocol, at
/// the hop it reaches), the hop it leaves and the hop it reaches.
#[must_use]
pub fn transition_events(t: &HopTag) -> [PacketEvent; 3] {
    // A hook's code (`hook_code`) is its direction, plus the stack hook's number << 1.
    let hop = |netns: u32, ifindex: u32, code: u8| {
        let mut ev = PacketEvent::zeroed();
        ev.key.netns = netns;
        ev.key.ifindex = ifindex;
        ev.key.direction = code & 1;
        ev.key.hook = code >> 1;
        ev.key.ethertype = ETH_P_IP;
        ev
    };
    let mut pair = hop(t.to_netns, t.to_ifindex, t.to_direction);
    pair.key.src[..4].copy_from_slice(&t.src);
    pair.key.dst[..4].copy_from_slice(&t.dst);
    pair.key.proto = t.proto;
    [
        pair,
        hop(t.from_netns, t.from_ifindex, t.from_direction),
        hop(t.to_netns, t.to_ifindex, t.to_direction),
    ]
}

/// The latency rows of the kernel's per-hop histograms (`inspector_common::hop`), named
/// like [`Aggregator::rows`] (through an event carrying the hop's or the pair's fields);
/// transitions that get the same names are merged.
pub fn kernel_rows(
    hists: &[HopHist],
    mut hop_name: impl FnMut(&PacketEvent) -> String,
    mut pair_name: impl FnMut(&PacketEvent) -> String,
) -> Vec<LatencyRow> {
    let mut merged: std::collections::BTreeMap<(String, String, String), HopHist> =
        std::collections::BTreeMap::new();
    for h in hists {
        let [pair, from, to] = transition_events(&h.tag);
        let key = (pair_name(&pair), hop_name(&from), hop_name(&to));
        match merged.entry(key) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(*h);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().merge(h),
        }
    }
    let mut rows: Vec<LatencyRow> = merged
        .into_iter()
        .map(|((pair, from, to), h)| {
            let pct = |p: u64| {
                let n: u64 = h.buckets.iter().map(|&c| u64::from(c)).sum();
                let rank = (n * p).div_ceil(100).clamp(1, n.max(1));
                let mut seen = 0u64;
                for (b, &c) in h.buckets.iter().enumerate() {
                    seen += u64::from(c);
                    if seen >= rank {
                        return hop_bucket_value(b).min(h.max_ns);
                    }
                }
                h.max_ns
            };
            LatencyRow {
                pair,
                from,
                to,
                packets: h.packets,
                p50_ns: pct(50),
                p90_ns: pct(90),
                p99_ns: pct(99),
                max_ns: h.max_ns,
                mean_ns: h.sum_ns.checked_div(h.packets).unwrap_or(0),
            }
        })
        .collect();
    path_order(&mut rows);
    rows
}
