//! Unit tests of per-hop timing, on synthetic events and histograms.
use inspector_common::{PacketEvent, hop::HopHist};

use super::{
    Aggregator, Histogram, Stitcher, auto_shift,
    histogram::{bucket, bucket_value},
    kernel_rows,
};

fn event(ts: u64, dir: u8, ifindex: u32, frame: &[u8]) -> PacketEvent {
    let mut ev = PacketEvent::zeroed();
    ev.ts_ns = ts;
    ev.key.direction = dir;
    ev.key.ifindex = ifindex;
    ev.snap[..frame.len()].copy_from_slice(frame);
    ev.snap_len = u16::try_from(frame.len()).unwrap();
    ev
}

/// An Ethernet + IPv4 + TCP header with the given addresses, id and sequence number.
fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, id: u16, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&60u16.to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[23] = 6;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f
}

#[test]
fn a_packet_is_one_packet_across_dnat_and_masquerade() {
    let before = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 7, 1000);
    let after = tcp_frame([198, 18, 30, 1], [198, 18, 30, 2], 51234, 7, 1000);
    let other = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 8, 1000);
    let mut s = Stitcher::default();
    s.push(&event(100, 1, 9, &before));
    s.push(&event(130, 0, 10, &before));
    s.push(&event(190, 1, 11, &after));
    s.push(&event(195, 0, 2, &after));
    s.push(&event(150, 1, 9, &other));
    assert!(
        s.take_quiet(200, 1000).is_empty(),
        "still within the idle window"
    );
    let done = s.take_quiet(10_000, 1000);
    assert_eq!(done.len(), 2);
    let hops: Vec<(u64, u32)> = done[0].iter().map(|e| (e.ts_ns, e.key.ifindex)).collect();
    assert_eq!(hops, [(100, 9), (130, 10), (190, 11), (195, 2)]);
    assert_eq!(done[1].len(), 1);
}

#[test]
fn histogram_is_within_two_percent_and_max_is_exact() {
    let mut h = Histogram::default();
    for v in 1..=100_000u64 {
        h.add(v * 10);
    }
    for (p, exact) in [(50, 500_000u64), (90, 900_000), (99, 990_000)] {
        let got = h.percentile(p);
        assert!(
            got.abs_diff(exact) * 1000 <= exact * 16,
            "p{p}: {got} vs {exact}"
        );
    }
    assert_eq!(
        (h.count(), h.max(), h.mean()),
        (100_000, 1_000_000, 500_005)
    );
    for v in [0u64, 1, 31, 32, 33, 63, 64, 1000, 1 << 40, u64::MAX / 3] {
        let b = bucket_value(bucket(v));
        assert!(b.abs_diff(v) as f64 <= v as f64 * 0.016 + 0.5, "{v} -> {b}");
    }
}

#[test]
fn aggregator_follows_packets_across_nat_and_closes_them() {
    let mut a = Aggregator::default();
    for i in 0..100u32 {
        let ts = u64::from(i) * 1_000_000;
        let before = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 7, i);
        let after = tcp_frame([198, 18, 30, 1], [198, 18, 30, 2], 51234, 7, i);
        a.push(&event(ts, 1, 9, &before));
        a.push(&event(ts + 30 + u64::from(i), 0, 10, &before));
        a.push(&event(ts + 500, 1, 11, &after));
        a.push(&event(ts + 505, 0, 2, &after));
    }
    a.close_quiet(99_000_000, 10_000_000);
    assert_eq!(
        a.packets, 90,
        "packets first seen 10 ms before 'now' are closed"
    );
    a.close_quiet(0, 0);
    assert_eq!((a.events, a.packets, a.closed_early), (400, 100, 0));
    let rows = a.rows(|e| format!("if{}", e.key.ifindex), |_| "p".into());
    let got: Vec<(&str, &str, u64)> = rows
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str(), r.packets))
        .collect();
    assert_eq!(
        got,
        [
            ("if9", "if10", 100),
            ("if10", "if11", 100),
            ("if11", "if2", 100)
        ],
        "in path order"
    );
    let first = rows.iter().find(|r| r.from == "if9").unwrap();
    assert_eq!(first.max_ns, 129);
    assert!(first.p50_ns.abs_diff(80) <= 1, "{}", first.p50_ns);
    assert_eq!(rows.iter().find(|r| r.from == "if11").unwrap().p99_ns, 5);
}

#[test]
fn kernel_rows_merge_cpus_and_read_percentiles_from_the_kernels_buckets() {
    use inspector_common::hop::{HOP_BUCKETS, HopTag, hop_bucket};
    let tag = HopTag {
        from_ifindex: 9,
        to_ifindex: 10,
        src: [198, 18, 0, 2],
        dst: [198, 18, 0, 3],
        proto: 17,
        from_direction: 1,
        used: 1,
        ..HopTag::default()
    };
    // Two CPUs' histograms of the same transition: 1..=1000 us, odd values on one CPU,
    // even on the other, bucketed as the kernel does.
    let mut per_cpu = [HopHist {
        tag,
        packets: 0,
        sum_ns: 0,
        max_ns: 0,
        buckets: [0; HOP_BUCKETS],
    }; 2];
    for us in 1..=1000u64 {
        let h = &mut per_cpu[(us % 2) as usize];
        let ns = us * 1000;
        h.packets += 1;
        h.sum_ns += ns;
        h.max_ns = h.max_ns.max(ns);
        h.buckets[hop_bucket(ns)] += 1;
    }
    let rows = kernel_rows(
        &per_cpu,
        |e| format!("if{}", e.key.ifindex),
        |e| format!("{:?}", &e.key.src[..4]),
    );
    assert_eq!(rows.len(), 1, "the same names merge");
    let r = &rows[0];
    assert_eq!((r.from.as_str(), r.to.as_str()), ("if9", "if10"));
    assert_eq!((r.packets, r.max_ns, r.mean_ns), (1000, 1_000_000, 500_500));
    for (got, exact) in [
        (r.p50_ns, 500_000u64),
        (r.p90_ns, 900_000),
        (r.p99_ns, 990_000),
    ] {
        assert!(
            got.abs_diff(exact) * 100 <= exact * 7,
            "{got} vs {exact} (buckets are 1/8 of a power of two wide)"
        );
    }
}

#[test]
fn auto_sampling_times_light_traffic_fully_and_caps_heavy_traffic() {
    let b = 50_000.0;
    assert_eq!(auto_shift(0, 1000.0, b), 0, "light: every packet");
    // 1 M transitions/s offered: 1 in 32 keeps it under the budget (31,250/s).
    let s = auto_shift(0, 1_000_000.0, b);
    assert_eq!(s, 5);
    let timed = 1_000_000.0 / 32.0;
    assert_eq!(auto_shift(s, timed, b), 5, "steady");
    // The traffic halves: 15,625/s timed; one step down would be 31,250/s > half the budget.
    assert_eq!(auto_shift(5, timed / 2.0, b), 5);
    // It drops to a tenth: step down by one.
    assert_eq!(auto_shift(5, timed / 10.0, b), 4);
    assert_eq!(auto_shift(10, 1e9, b), 10, "never above the maximum");
}

#[test]
fn non_ip_events_pass_through_alone() {
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut s = Stitcher::default();
    s.push(&event(1, 1, 3, &arp));
    assert_eq!(s.take_quiet(2, 1_000_000).len(), 1);
}
