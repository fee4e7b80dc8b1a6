//! Truncated and malformed packets on a real veth are counted as such by the kernel programs,
//! and still counted in the flow totals (which keep matching the interface counters).
mod support;

use support::{Inspector, Netns, bad_frames, counters, inject, json_lines, unique};

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn truncated_and_malformed_packets_are_counted_as_such() {
    let x = Netns::new(&unique("ax"));
    let y = Netns::new(&unique("ay"));
    x.exec(&[
        "ip", "link", "add", "vx", "type", "veth", "peer", "name", "vy", "netns", &y.name,
    ]);
    x.exec(&["ip", "link", "set", "vx", "up"]);
    y.exec(&["ip", "link", "set", "vy", "up"]);
    let before = (counters(&x)["vx"], counters(&y)["vy"]);
    let insp = Inspector::start(&[
        "flows",
        "-o",
        "json",
        "--duration",
        "300",
        "--netns",
        &x.name,
        "--netns",
        &y.name,
    ]);
    inject(&x, "vx", bad_frames());
    support::wait_quiet(&[&x, &y], std::time::Duration::from_millis(300));
    let out = insp.interrupt();
    let after = (counters(&x)["vx"], counters(&y)["vy"]);
    let stats = &json_lines(&out.stdout, "stats")[0];
    // Each frame is seen twice: leaving vx, arriving on vy.
    assert_eq!(stats["truncated"].as_u64(), Some(2 * 4), "{stats}");
    assert_eq!(stats["malformed"].as_u64(), Some(2 * 2), "{stats}");
    let flows = json_lines(&out.stdout, "flow");
    let sum = |ifname: &str, dir: &str| -> u64 {
        flows
            .iter()
            .filter(|f| f["ifname"] == ifname && f["direction"] == dir)
            .map(|f| f["packets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sum("vx", "egress"),
        after.0.tx_packets - before.0.tx_packets,
        "every frame counted"
    );
    assert_eq!(sum("vx", "egress"), 6);
    assert_eq!(
        sum("vy", "ingress"),
        after.1.rx_packets - before.1.rx_packets
    );
    let cut = flows
        .iter()
        .find(|f| f["ifname"] == "vx" && f["proto"] == "tcp")
        .unwrap_or_else(|| panic!("cut TCP flow listed: {flows:#?}"));
    assert_eq!(
        (cut["sport"].as_u64(), cut["dport"].as_u64()),
        (Some(8080), Some(80)),
        "ports read before the cut"
    );
    assert_eq!(cut["anomalies"], "truncated");
}
