//! Per-hop timing: one packet's hops stitched by a fingerprint that survives NAT and
//! veth/bridge crossings (`fingerprint`, `stitch`), per-hop latency from per-packet events
//! (`aggregator`, `histogram`) or from the kernel's own histograms (`kernel`), rows in path
//! order (`order`), and the auto sampling policy (`sampling`).
mod aggregator;
mod fingerprint;
mod histogram;
mod kernel;
mod order;
mod sampling;
mod stitch;
#[cfg(test)]
mod tests;

pub use aggregator::Aggregator;
pub use fingerprint::{Fingerprint, fingerprint};
pub use histogram::Histogram;
pub use kernel::{kernel_rows, transition_events};
pub use order::path_order;
pub use sampling::{TIMED_PER_SEC, auto_shift};
pub use stitch::Stitcher;

/// One row of the latency table (`type: "latency"` JSON).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencyRow {
    /// `src -> dst`, named when the ends are known.
    pub pair: String,
    /// `netns/ifname(out|in)` of the hop the time is measured from, and to.
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Exact mean: unlike percentiles, means of consecutive hops add up to the path's.
    pub mean_ns: u64,
}
