//! `inspector trace`: one event per packet per hook, filtered in the kernel, with names.
mod support;

use std::net::SocketAddr;

use serde_json::Value;

use support::{BridgeLab, Inspector, hops_tracer, json_lines, tbf_lab, udp_frames};

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn trace_filters_in_the_kernel_and_names_every_hop() {
    let lab = BridgeLab::new("tr");
    let insp = Inspector::start(&[
        "trace",
        "-o",
        "json",
        "--netns",
        &lab.a.name,
        "--netns",
        &lab.br.name,
        "--proto",
        "udp",
        "--port",
        "7100",
    ]);
    // Noise the filter must drop in the kernel: ICMP, TCP, and UDP to another port.
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "3", "-i", "0.05", "-W", "2", "198.18.0.4"],
    );
    inspector::traffic::tcp_transfer(
        &lab.c.path(),
        &lab.a.path(),
        "198.18.0.4:7101".parse::<SocketAddr>().unwrap(),
        50_000,
    )
    .unwrap();
    inspector::traffic::udp_burst(
        &lab.c.path(),
        &lab.a.path(),
        "198.18.0.4:7102".parse().unwrap(),
        5,
        64,
    )
    .unwrap();
    let n = inspector::traffic::udp_burst(
        &lab.c.path(),
        &lab.a.path(),
        "198.18.0.4:7100".parse().unwrap(),
        10,
        64,
    )
    .unwrap();
    assert_eq!(n, 10);
    support::wait_quiet(&lab.all(), std::time::Duration::from_millis(300));
    let out = insp.interrupt_ok();
    let pkts = json_lines(&out.stdout, "packet");
    // 10 datagrams at three hooks in the selected namespaces: a/eth0 out, br/va in, br/vc out.
    assert_eq!(pkts.len(), 30, "{pkts:#?}");
    for p in &pkts {
        assert_eq!(p["proto"], "udp");
        assert_eq!(p["dport"].as_u64(), Some(7100));
        assert_eq!(
            p["len"].as_u64(),
            Some(14 + 20 + 8 + 64),
            "whole frame length"
        );
        assert!(p["ts_ns"].as_u64().unwrap() > 0);
    }
    let hops: std::collections::BTreeSet<(String, String, String)> = pkts
        .iter()
        .map(|p| {
            (
                p["netns_name"].as_str().unwrap().to_owned(),
                p["ifname"].as_str().unwrap().to_owned(),
                p["direction"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect: std::collections::BTreeSet<_> = [
        (lab.a.name.clone(), "eth0".to_owned(), "egress".to_owned()),
        (lab.br.name.clone(), "va".to_owned(), "ingress".to_owned()),
        (lab.br.name.clone(), "vc".to_owned(), "egress".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(hops, expect);
    // The kernel itself sent only matching events: the filter ran there, not here.
    let stats = json_lines(&out.stdout, "stats");
    assert_eq!(stats[0]["events_sent"].as_u64(), Some(30), "{stats:?}");
    assert_eq!(stats[0]["events_lost"].as_u64(), Some(0));
}

/// A ring buffer too small for a burst loses events; every lost one is counted, so events
/// delivered + events lost = packets that crossed the hook (the kernel's interface counter).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn lost_events_are_counted_exactly() {
    const BURST: u32 = 20_000;
    let lab = BridgeLab::new("lo");
    // Resolve ARP first, so the window holds nothing but the UDP burst.
    support::in_ns(&lab.a.name, &["ping", "-c", "1", "-W", "2", "198.18.0.4"]);
    support::wait_quiet(&lab.all(), std::time::Duration::from_millis(300));
    let before = support::counters(&lab.a)["eth0"];
    let insp = Inspector::start(&[
        "trace",
        "-o",
        "json",
        "--netns",
        &lab.a.name,
        "-i",
        "eth0",
        "--ring-kib",
        "4",
        "--proto",
        "udp",
    ]);
    // Two senders at once, on both CPUs: a 4 KiB ring (19 events) overflows however fast
    // the reader is woken (one sender alone was sometimes read as fast as it sent).
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                inspector::traffic::udp_send(
                    &lab.a.path(),
                    "198.18.0.4:7200".parse().unwrap(),
                    BURST / 2,
                    16,
                )
                .unwrap();
            });
        }
    });
    support::wait_quiet(&lab.all(), std::time::Duration::from_millis(300));
    let out = insp.interrupt();
    let after = support::counters(&lab.a)["eth0"];
    let delivered = json_lines(&out.stdout, "packet").len() as u64;
    let stats = &json_lines(&out.stdout, "stats")[0];
    let (sent, lost) = (
        stats["events_sent"].as_u64().unwrap(),
        stats["events_lost"].as_u64().unwrap(),
    );
    let tx = after.tx_packets - before.tx_packets;
    assert_eq!(tx, u64::from(BURST), "the window holds only the burst");
    assert!(
        lost > 0,
        "a 4 KiB ring should overflow on {BURST} packets: {stats}"
    );
    assert_eq!(sent, delivered, "every event written to the ring was read");
    assert_eq!(
        sent + lost,
        tx,
        "each packet leaving a/eth0 was delivered or counted as lost"
    );
}

/// `trace --hops`: every packet of a bridged ping once, with its hops in path order - the
/// sender's eth0, its bridge port, the receiver's bridge port, the receiver's eth0 (veth
/// peers as iproute2 names them), each crossed in the order the kernel's code runs them:
/// tc egress, then `net_dev_queue` and `net_dev_start_xmit` around the qdisc (in
/// `__dev_queue_xmit`), then on the peer `netif_receive_skb` and tc ingress (in
/// `__netif_receive_skb_core`) - and times that only go forward. `--tc-only` keeps the tc
/// hooks alone.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn trace_hops_stitches_each_packet_across_the_bridge() {
    let lab = BridgeLab::new("th");
    let insp = hops_tracer(&lab, &["--proto", "icmp"]);
    let tc_only = hops_tracer(&lab, &["--proto", "icmp", "--tc-only"]);
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "4", "-i", "0.05", "-W", "2", "198.18.0.3"],
    );
    // Each packet is printed once quiet: wait for the 4 requests and 4 replies of each.
    for t in [&insp, &tc_only] {
        t.wait_json(std::time::Duration::from_secs(10), |r| {
            r.iter().filter(|p| p["type"] == "packet_hops").count() >= 8
        });
    }
    let a_ns = lab.a.name.as_str();
    let b_ns = lab.b.name.as_str();
    let br = lab.br.name.as_str();
    let device = |ns: &str, dev: &str, out: bool, stack: bool| -> Vec<String> {
        let hooks: &[&str] = match (out, stack) {
            (true, true) => &["tc-egress", "net_dev_queue", "net_dev_start_xmit"],
            (false, true) => &["netif_receive_skb", "tc-ingress"],
            (true, false) => &["tc-egress"],
            (false, false) => &["tc-ingress"],
        };
        hooks.iter().map(|h| format!("{ns}/{dev}/{h}")).collect()
    };
    for (out, stack) in [(insp.interrupt(), true), (tc_only.interrupt(), false)] {
        let pkts = json_lines(&out.stdout, "packet_hops");
        let requests: Vec<&serde_json::Value> = pkts
            .iter()
            .filter(|p| p["src"] == "198.18.0.2" && p["dst"] == "198.18.0.3")
            .collect();
        let replies = pkts
            .iter()
            .filter(|p| p["src"] == "198.18.0.3" && p["dst"] == "198.18.0.2")
            .count();
        assert_eq!(requests.len(), 4, "{pkts:#?}");
        assert_eq!(replies, 4, "{pkts:#?}");
        let want: Vec<String> = [
            device(a_ns, "eth0", true, stack),
            device(br, "va", false, stack),
            device(br, "vb", true, stack),
            device(b_ns, "eth0", false, stack),
        ]
        .concat();
        for p in requests {
            assert_eq!(support::hop_names(p, "hook"), want, "{p}");
            let ts: Vec<u64> = p["hops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["ts_ns"].as_u64().unwrap())
                .collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
            assert_eq!(p["total_ns"].as_u64().unwrap(), ts[ts.len() - 1] - ts[0]);
        }
    }
}

/// Per-hop timing against an independent oracle: a tbf qdisc on the sender's eth0 holds a
/// burst of 1000-byte frames at 8 Mbit/s, so each frame waits 1000 B / (1 MB/s) = 1 ms longer
/// than the one before (backlog / rate). `trace --hops` must put that wait between
/// `net_dev_queue` and `net_dev_start_xmit` on the sender's eth0 (the qdisc: the largest gap
/// of the packet's path), growing by 1 ms per packet within 10%; `flows --latency` (timed in
/// the kernel) must report the same hop's distribution from the sender's eth0 to its bridge
/// port.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn trace_hops_puts_a_tbf_queue_delay_on_its_hop() {
    let lab = tbf_lab("tq");
    let nss = [lab.a.name.as_str(), lab.br.name.as_str()];
    let udp = ["--proto", "udp", "--port", "7300"];
    let lat = latency_flows(&nss, &udp);
    let stack = latency_flows(&nss, &[&udp[..], &["--stack"]].concat());
    let insp = hops_tracer(&lab, &["--proto", "udp", "--port", "7300"]);
    // 20 frames of 1000 B at once; the tracer prints each once it has crossed every hook.
    udp_frames(&lab, 20, 7300);
    insp.wait_json(std::time::Duration::from_secs(20), |r| {
        r.iter()
            .filter(|p| p["type"] == "packet_hops" && p["len"] == 1000)
            .count()
            >= 20
    });
    let out = insp.interrupt();
    let at = |dev: &str, hook: &str| format!("{dev}/{hook}");
    let a_eth0 = format!("{}/eth0", lab.a.name);
    let port = format!("{}/va", lab.br.name);
    // (first hop's time, qdisc wait in ms, tc egress -> bridge port tc ingress in ms)
    let mut waits: Vec<(u64, f64, f64)> = Vec::new();
    for p in json_lines(&out.stdout, "packet_hops") {
        // One shape for an end in every record: the address, and the port apart.
        if p["src"] != "198.18.0.2" || p["sport"].is_null() || p["len"].as_u64() != Some(1000) {
            continue;
        }
        let names = support::hop_names(&p, "hook");
        let ts = |name: &str| {
            let i = names
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("packet without {name}: {p}"));
            p["hops"][i]["ts_ns"].as_u64().unwrap()
        };
        let (t0, q0, q1, t1) = (
            ts(&at(&a_eth0, "tc-egress")),
            ts(&at(&a_eth0, "net_dev_queue")),
            ts(&at(&a_eth0, "net_dev_start_xmit")),
            ts(&at(&port, "tc-ingress")),
        );
        // The queue is in the qdisc: it is the largest gap of the packet's path.
        let biggest = p["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["delta_ns"].as_u64().unwrap())
            .max()
            .unwrap();
        if q1 - q0 > 300_000 {
            assert_eq!(biggest, q1 - q0, "{p}");
        }
        #[expect(clippy::cast_precision_loss, reason = "milliseconds")]
        waits.push((t0, (q1 - q0) as f64 / 1e6, (t1 - t0) as f64 / 1e6));
    }
    waits.sort_by_key(|w| w.0);
    assert_eq!(waits.len(), 20, "{waits:?}");
    // Theil-Sen slope (median of the pairwise slopes) of the wait against the packet's
    // position, over the packets that queued (the first ones pass on the burst's tokens):
    // robust to a few waits stretched by a late softirq on a busy machine.
    let q: Vec<(f64, f64)> = waits
        .iter()
        .enumerate()
        .filter(|(_, w)| w.1 > 0.3)
        .map(|(i, w)| (f64::from(u32::try_from(i).unwrap()), w.1))
        .collect();
    assert!(q.len() >= 15, "only {} packets queued: {waits:?}", q.len());
    let mut slopes: Vec<f64> = Vec::new();
    for (i, a) in q.iter().enumerate() {
        for b in &q[i + 1..] {
            slopes.push((b.1 - a.1) / (b.0 - a.0));
        }
    }
    slopes.sort_by(f64::total_cmp);
    let slope = slopes[slopes.len() / 2];
    eprintln!("tbf: per-packet wait grows {slope:.3} ms (expected 1.000); waits {waits:?}");
    // `flows --latency` (another attachment, timing in the kernel) reports the hop from the
    // sender's eth0 to its bridge port: 20 packets, its median and maximum as traced.
    let out = lat.interrupt();
    let rows = json_lines(&out.stdout, "latency");
    let row = latency_row(
        &rows,
        &format!("{}/eth0(out)", lab.a.name),
        &format!("{}/va(in)", lab.br.name),
    );
    assert_eq!(row["packets"], 20, "{row}");
    let mut sorted: Vec<f64> = waits.iter().map(|w| w.2).collect();
    sorted.sort_by(f64::total_cmp);
    #[expect(clippy::cast_precision_loss, reason = "milliseconds")]
    let ms = |k: &str| row[k].as_u64().unwrap() as f64 / 1e6;
    let close = |a: f64, b: f64| (a - b).abs() <= 0.05 * b.max(1.0);
    // A percentile comes from the kernel's buckets (1/8 of a power of two wide): a bucket's
    // middle is within 6.25% of any value in it.
    let in_bucket = |a: f64, b: f64| (a - b).abs() <= 0.0625 * b.max(1.0) + 0.01;
    assert!(
        close(ms("max_ns"), sorted[19]),
        "max {} vs {}",
        ms("max_ns"),
        sorted[19]
    );
    assert!(
        in_bucket(ms("p50_ns"), sorted[9]),
        "p50 {} vs {}",
        ms("p50_ns"),
        sorted[9]
    );
    // The mean is exact (no buckets): the traced waits' mean within 1%.
    #[expect(clippy::cast_precision_loss, reason = "twenty values")]
    let traced_mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    assert!(
        (ms("mean_ns") - traced_mean).abs() <= 0.01 * traced_mean,
        "mean {} vs {traced_mean}",
        ms("mean_ns")
    );
    assert!(
        (slope - 1.0).abs() < 0.1,
        "slope {slope:.3} ms/packet, expected 1.0 ms: {waits:?}"
    );
    // `flows --latency --stack` times the qdisc itself in the kernel: the hop from
    // net_dev_queue to net_dev_start_xmit on a's eth0 has the traced qdisc waits' median
    // and maximum.
    let out = stack.interrupt();
    let rows = json_lines(&out.stdout, "latency");
    let row = latency_row(
        &rows,
        &format!("{}/eth0(queue)", lab.a.name),
        &format!("{}/eth0(xmit)", lab.a.name),
    );
    let mut qdisc: Vec<f64> = waits.iter().map(|w| w.1).collect();
    qdisc.sort_by(f64::total_cmp);
    eprintln!("qdisc row {row}; traced {qdisc:?}");
    assert_eq!(row["packets"], 20, "{row}");
    assert!(
        close(row_ms(row, "max_ns"), qdisc[19]),
        "qdisc max {} vs {}",
        row_ms(row, "max_ns"),
        qdisc[19]
    );
    assert!(
        in_bucket(row_ms(row, "p50_ns"), qdisc[9]),
        "qdisc p50 {} vs {}",
        row_ms(row, "p50_ns"),
        qdisc[9]
    );
}

#[expect(clippy::cast_precision_loss, reason = "milliseconds")]
fn row_ms(row: &serde_json::Value, k: &str) -> f64 {
    row[k].as_u64().unwrap() as f64 / 1e6
}

/// Sampled per-hop timing picks packets by fingerprint, so every hop times the same ones:
/// with 1 in 4, the three transitions of a's datagrams to b (a's eth0 -> bridge port ->
/// bridge port -> b's eth0) count the same packets, about a quarter of them; a second
/// inspector timing every packet counts all of them at every hop, as b's eth0 received
/// them (its kernel counter is the oracle).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn flows_latency_samples_the_same_packets_at_every_hop() {
    let lab = BridgeLab::new("ls");
    let nss = [
        lab.a.name.as_str(),
        lab.br.name.as_str(),
        lab.b.name.as_str(),
    ];
    let start = |sample| {
        latency_flows(
            &nss,
            &[
                "--latency-sample",
                sample,
                "--proto",
                "udp",
                "--port",
                "7310",
            ],
        )
    };
    let (sampled, every) = (start("4"), start("1"));
    let before = support::counters(&lab.b)["eth0"].rx_packets;
    udp_frames(&lab, 400, 7310);
    // b's eth0 counter (the oracle) says when all have arrived.
    support::eventually(std::time::Duration::from_secs(10), || {
        support::counters(&lab.b)["eth0"].rx_packets - before >= 400
    });
    let received = support::counters(&lab.b)["eth0"].rx_packets - before;
    assert!(received >= 400, "b's eth0 received {received}");
    let path = [
        format!("{}/eth0(out)", lab.a.name),
        format!("{}/va(in)", lab.br.name),
        format!("{}/vb(out)", lab.br.name),
        format!("{}/eth0(in)", lab.b.name),
    ];
    let counts = |insp: Inspector| -> Vec<u64> {
        let out = insp.interrupt();
        let rows = json_lines(&out.stdout, "latency");
        path.windows(2)
            .map(|w| {
                let r = rows
                    .iter()
                    .find(|r| r["from"] == w[0].as_str() && r["to"] == w[1].as_str())
                    .unwrap_or_else(|| panic!("no row {} -> {}: {rows:#?}", w[0], w[1]));
                assert!(
                    r["p50_ns"].as_u64().unwrap() <= r["max_ns"].as_u64().unwrap(),
                    "{r}"
                );
                r["packets"].as_u64().unwrap()
            })
            .collect()
    };
    let all = counts(every);
    assert_eq!(all, [400, 400, 400], "every packet timed at every hop");
    let some = counts(sampled);
    eprintln!("1 in 4 of 400 datagrams: {some:?} timed per hop");
    assert!(
        some.iter().all(|&c| c == some[0]),
        "the same packets at every hop: {some:?}"
    );
    // Binomial(400, 1/4): 100 +- 8.7; this band is 4.6 standard deviations wide.
    assert!((60..=140).contains(&some[0]), "{some:?}");
}

/// Auto sampling backs off under load: datagrams from a to b as fast as one socket sends
/// them are far over the 5,000 timed hops per second, so the inspector times fewer than all
/// (it says when it changes the rate, and at which rates it timed), while b's eth0 counter
/// says all arrived; a handful of pings before it were all timed (light traffic: every
/// packet). The controller looks every 250 ms: on a busy machine it may get the CPU late,
/// so the load goes on (bounded) until the inspector says it backed off, and one more burst
/// runs under the reduced rate.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn flows_latency_auto_sampling_backs_off_under_load() {
    let lab = BridgeLab::new("la");
    // Not quiet: rate changes are said on stderr.
    let mut args = vec!["flows", "--latency", "-o", "json", "--duration", "120"];
    for ns in [&lab.a.name, &lab.br.name, &lab.b.name] {
        args.extend(["--netns", ns.as_str()]);
    }
    let insp = Inspector::start(&args);
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "5", "-i", "0.05", "-W", "2", "198.18.0.3"],
    );
    let before = support::counters(&lab.b)["eth0"].rx_packets;
    let send = |n: u32| {
        inspector::traffic::udp_send(&lab.a.path(), "198.18.0.3:7320".parse().unwrap(), n, 16)
            .unwrap();
        u64::from(n)
    };
    let backed_off = "per-hop timing (auto): 1 packet in";
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    let mut sent = 0;
    while !insp.stderr_text().contains(backed_off) {
        assert!(
            std::time::Instant::now() < deadline,
            "auto sampling never backed off: {}",
            insp.stderr_text()
        );
        sent += send(10_000);
    }
    sent += send(30_000);
    support::eventually(std::time::Duration::from_secs(10), || {
        support::counters(&lab.b)["eth0"].rx_packets - before >= sent
    });
    let received = support::counters(&lab.b)["eth0"].rx_packets - before;
    let out = insp.interrupt();
    let rows = json_lines(&out.stdout, "latency");
    let first_hop = |proto: &str| {
        rows.iter()
            .find(|r| {
                r["pair"].as_str().unwrap_or("").ends_with(proto)
                    && r["from"] == format!("{}/eth0(out)", lab.a.name).as_str()
            })
            .unwrap_or_else(|| panic!("no {proto} row from a's eth0: {rows:#?}"))["packets"]
            .as_u64()
            .unwrap()
    };
    let sampling = &json_lines(&out.stdout, "latency_sampling")[0];
    eprintln!(
        "auto: {sampling}; udp timed {} of {received}",
        first_hop("udp")
    );
    assert_eq!(sampling["auto"], true);
    assert_eq!(
        first_hop("icmp"),
        5,
        "light traffic: every echo request timed"
    );
    let rates = sampling["timed_one_in"].as_array().unwrap();
    assert!(rates.len() > 1, "the rate never moved: {sampling}");
    assert!(received >= sent, "b's eth0 received {received} of {sent}");
    assert!(
        first_hop("udp") < received,
        "not every datagram may be timed under load: {} of {received}",
        first_hop("udp")
    );
}

/// The hops of one echo request and its reply add up to the round trip `ping` itself
/// measured (an independent clock: the client's), when a tbf queue on the sender's eth0
/// makes the request wait behind a burst of frames.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn trace_hops_add_up_to_the_round_trip_the_client_measured() {
    let lab = tbf_lab("ts");
    let insp = hops_tracer(&lab, &["--proto", "icmp"]);
    // 30 ms of backlog (30 frames of 1000 B at 1 MB/s), then one echo request behind it.
    udp_frames(&lab, 30, 7301);
    let out = support::in_ns(&lab.a.name, &["ping", "-c", "1", "-W", "3", "198.18.0.3"]);
    let rtt_ms: f64 = out
        .split("time=")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no rtt in {out}"));
    // The request and its reply, each printed once quiet.
    insp.wait_json(std::time::Duration::from_secs(10), |r| {
        let from = |src: &str| {
            r.iter()
                .any(|p| p["type"] == "packet_hops" && p["src"] == src)
        };
        from("198.18.0.2") && from("198.18.0.3")
    });
    let out = insp.interrupt();
    let pkts = json_lines(&out.stdout, "packet_hops");
    let total = |src: &str| {
        let p = pkts
            .iter()
            .filter(|p| p["src"] == src)
            .max_by_key(|p| p["time_unix_ns"].as_i64().unwrap())
            .unwrap_or_else(|| panic!("no packet from {src}: {pkts:#?}"));
        // tc egress, qdisc in and out, peer receive and tc ingress at each of the two veths.
        assert_eq!(p["hops"].as_array().unwrap().len(), 10, "{p}");
        #[expect(clippy::cast_precision_loss, reason = "milliseconds")]
        let ms = p["total_ns"].as_u64().unwrap() as f64 / 1e6;
        ms
    };
    let (req, rep) = (total("198.18.0.2"), total("198.18.0.3"));
    eprintln!("rtt {rtt_ms} ms = request {req:.3} ms + reply {rep:.3} ms + the hosts' own time");
    assert!(rtt_ms > 5.0, "the request did not queue (rtt {rtt_ms} ms)");
    // The hops lie inside the round trip, and with the queue they are nearly all of it (the
    // rest is the two stacks between socket and eth0; ping prints 3 significant digits).
    assert!(
        req + rep <= rtt_ms * 1.01,
        "hops {req}+{rep} ms > rtt {rtt_ms} ms"
    );
    assert!(
        req + rep >= rtt_ms * 0.9,
        "hops {req}+{rep} ms << rtt {rtt_ms} ms"
    );
}

/// The `latency` row of the hop `from` -> `to`.
fn latency_row<'a>(rows: &'a [Value], from: &str, to: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["from"] == from && r["to"] == to)
        .unwrap_or_else(|| panic!("no latency row {from} -> {to}: {rows:#?}"))
}

/// `flows --latency -o json` (printing at interrupt) on namespaces `nss`, with `extra`.
fn latency_flows(nss: &[&str], extra: &[&str]) -> Inspector {
    let mut args = vec!["flows", "--latency", "-o", "json", "-q", "--duration", "30"];
    for ns in nss {
        args.extend(["--netns", ns]);
    }
    args.extend_from_slice(extra);
    Inspector::start(&args)
}

/// `-c N` counts packets, as tcpdump's does: each counted packet is shown at every hook it
/// crosses, and the trace stops by itself once it has gone quiet.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn trace_count_counts_packets_with_all_their_hops() {
    let lab = BridgeLab::new("tc");
    let insp = Inspector::start(&[
        "trace",
        "-o",
        "json",
        "-c",
        "2",
        "--proto",
        "icmp",
        "--netns",
        &lab.a.name,
        "--netns",
        &lab.br.name,
        "--netns",
        &lab.b.name,
    ]);
    // Three echoes: the first request and its reply are the two packets counted.
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "3", "-i", "0.3", "-W", "2", "198.18.0.3"],
    );
    let out = insp.wait_exit(std::time::Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pkts = json_lines(&out.stdout, "packet");
    let hooks = |icmp_type: u64| -> Vec<String> {
        pkts.iter()
            .filter(|p| p["icmp_type"] == icmp_type)
            .map(|p| {
                format!(
                    "{}/{} {}",
                    p["netns_name"].as_str().unwrap(),
                    p["ifname"].as_str().unwrap(),
                    p["direction"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (a, br, b) = (&lab.a.name, &lab.br.name, &lab.b.name);
    assert_eq!(
        hooks(8),
        [
            format!("{a}/eth0 egress"),
            format!("{br}/va ingress"),
            format!("{br}/vb egress"),
            format!("{b}/eth0 ingress"),
        ],
        "{pkts:#?}"
    );
    assert_eq!(
        hooks(0),
        [
            format!("{b}/eth0 egress"),
            format!("{br}/vb ingress"),
            format!("{br}/va egress"),
            format!("{a}/eth0 ingress"),
        ],
        "{pkts:#?}"
    );
    assert_eq!(pkts.len(), 8, "{pkts:#?}");
}
