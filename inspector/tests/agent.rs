//! `inspector agent` scraped by a real Prometheus (Debian's `prometheus`): the `PromQL` results
//! equal the kernel's interface counters over the window (packets and bytes, every interface
//! of a bridge lab), a drop caused on purpose appears with its reason as often as the
//! kernel's `Udp: NoPorts` counted it, the exposition passes `promtool check metrics`, the
//! JSON API's flow records add up to the same counters, and SIGTERM leaves nothing attached.
mod support;

use std::{
    collections::HashMap,
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use support::{
    BridgeLab, Counters, Inspector, bpf_objects, counters, eventually, held_objects, http_get,
    prom::{Prometheus, free_port},
};

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn prometheus_scrapes_what_the_kernel_counted() {
    let lab = BridgeLab::new("ag");
    let nss = lab.all();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "agent",
        "-q",
        "--interval",
        "0.5",
        "--listen",
        listen.as_str(),
    ];
    for n in &nss {
        args.extend(["--netns", n.name.as_str()]);
    }
    // The window opens at the attach: start again if the kernel's own chatter slipped in.
    let mut attempt = 0;
    let (before, agent) = loop {
        attempt += 1;
        let c0 = support::wait_quiet(&nss, Duration::from_millis(300));
        let a = Inspector::start(&args);
        let c1: Vec<_> = nss.iter().map(|n| counters(n)).collect();
        if c0 == c1 {
            break (c0, a);
        }
        assert!(
            attempt < 10,
            "background traffic never stopped around the attach"
        );
        drop(a);
    };
    assert!(eventually(Duration::from_secs(10), || http_get(
        port, "/readyz"
    )
    .is_some_and(|r| r.0 == 200)));
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    let prom = Prometheus::start(port);
    let noports = support::udp_noports(&lab.c);

    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "5", "-i", "0.05", "-W", "2", "198.18.0.3"],
    );
    let n = inspector::traffic::udp_burst(
        &lab.a.path(),
        &lab.c.path(),
        "198.18.0.2:7002".parse().unwrap(),
        200,
        64,
    )
    .expect("udp burst");
    assert_eq!(n, 200);
    inspector::traffic::udp_send(&lab.a.path(), "198.18.0.4:9".parse().unwrap(), 7, 32).unwrap();
    support::wait_quiet(&nss, Duration::from_millis(500));

    // The oracle, per "NS/IFNAME": (rx packets, rx bytes, tx packets, tx bytes) since the
    // attach, read again at each poll (the kernel's own chatter, ARP, may still come).
    let window = || -> HashMap<String, [u64; 4]> {
        let mut want = HashMap::new();
        for (i, ns) in nss.iter().enumerate() {
            for (ifname, a) in &counters(ns) {
                if ifname == "lo" {
                    continue;
                }
                let b = before[i].get(ifname).copied().unwrap_or_default();
                let d = Counters {
                    rx_packets: a.rx_packets - b.rx_packets,
                    rx_bytes: a.rx_bytes - b.rx_bytes,
                    tx_packets: a.tx_packets - b.tx_packets,
                    tx_bytes: a.tx_bytes - b.tx_bytes,
                };
                // The bridge device counts received bytes after its Ethernet header was
                // pulled.
                let hdr = if ifname == "br0" {
                    14 * d.rx_packets
                } else {
                    0
                };
                want.insert(
                    format!("{}/{ifname}", ns.name),
                    [d.rx_packets, d.rx_bytes + hdr, d.tx_packets, d.tx_bytes],
                );
            }
        }
        want
    };
    let mut want = window();
    assert_eq!(want.len(), 7);
    let promql = |metric: &str| -> HashMap<String, f64> {
        prom.query(&format!("sum by (hop, direction) ({metric})"))
    };
    let seen = |m: &HashMap<String, f64>, hop: &str, dir: &str| -> u64 {
        m.get(&format!("direction={dir},hop={hop}"))
            .copied()
            .unwrap_or(0.0) as u64
    };
    let mut last = (HashMap::new(), HashMap::new());
    let agreed = eventually(Duration::from_secs(30), || {
        last = (
            promql("inspector_packets_total"),
            promql("inspector_bytes_total"),
        );
        want = window();
        want.iter().all(|(hop, w)| {
            [
                seen(&last.0, hop, "ingress"),
                seen(&last.1, hop, "ingress"),
                seen(&last.0, hop, "egress"),
                seen(&last.1, hop, "egress"),
            ] == *w
        })
    });
    assert!(agreed, "PromQL {last:?} vs the kernel's counters {want:?}");
    for (hop, w) in &want {
        assert!(w[0] + w[2] > 0, "{hop} saw no traffic: vacuous");
    }
    // The drop caused on purpose: 7 datagrams to a closed port, as Udp NoPorts counted.
    let closed = support::udp_noports(&lab.c) - noports;
    assert_eq!(closed, 7);
    let hop = format!("{}/eth0", lab.c.name);
    let drops = prom.query(&format!(
        "sum(inspector_drops_total{{reason=\"NO_SOCKET\",hop=\"{hop}\"}})"
    ));
    assert_eq!(
        drops.values().next().copied().map(|v| v as u64),
        Some(closed),
        "{drops:?}"
    );

    // The exposition is valid for promtool; the JSON API adds up to the same counters.
    let (_, text) = http_get(port, "/metrics").unwrap();
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every query of the Grafana dashboard runs in this Prometheus (its `$node` as "All"),
    // and each names a metric the agent exposes here or docs/metrics.md lists (a family
    // with no sample yet is not exposed).
    let doc = std::fs::read_to_string(support::deploy_dir().join("../docs/metrics.md")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::deploy_dir().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().replace("$node", ".*"))
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    for e in &exprs {
        assert!(prom.accepts(e), "Prometheus refuses the dashboard's {e}");
        let family_exposed = e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("inspector_"))
            .all(|w| {
                let base = w
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                text.contains(&format!("# TYPE {base} "))
                    || text.contains(&format!("# TYPE {w} "))
                    || doc.contains(&format!("| `{base}` |"))
            });
        assert!(
            family_exposed,
            "the dashboard's {e} names a metric the agent neither exposes nor documents"
        );
    }
    let mut api_tot: HashMap<String, [u64; 2]> = HashMap::new();
    let api_agrees = eventually(Duration::from_secs(20), || {
        let want = window();
        let Some((_, api)) = http_get(port, "/api/flows") else {
            return false;
        };
        api_tot.clear();
        for f in &support::json_lines(api.as_bytes(), "flow") {
            let hop = format!(
                "{}/{}",
                f["netns_name"].as_str().unwrap(),
                f["ifname"].as_str().unwrap()
            );
            let e = api_tot
                .entry(format!("{hop} {}", f["direction"].as_str().unwrap()))
                .or_default();
            e[0] += f["packets"].as_u64().unwrap();
            e[1] += f["bytes"].as_u64().unwrap();
        }
        want.iter().all(|(hop, w)| {
            api_tot
                .get(&format!("{hop} egress"))
                .copied()
                .unwrap_or_default()
                == [w[2], w[3]]
                && api_tot
                    .get(&format!("{hop} ingress"))
                    .copied()
                    .unwrap_or_default()
                    == [w[0], w[1]]
        })
    });
    assert!(
        api_agrees,
        "/api/flows {api_tot:?} vs the kernel's counters {:?}",
        window()
    );

    // SIGTERM: exits cleanly, nothing of it left in the kernel.
    let held = held_objects(agent.pid());
    let out = agent.signal(libc::SIGTERM);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(eventually(Duration::from_secs(10), || {
        let o = bpf_objects();
        held.progs.iter().all(|id| !o.progs.contains_key(id))
            && held.links.iter().all(|id| !o.links.contains_key(id))
    }));
}

/// A busy `--listen` address is a one-line error, and nothing is attached.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_busy_listen_address_is_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = support::run_inspector(&["agent", "--listen", &addr], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// Which backend a Service sent each connection to, as Prometheus has it, equals conntrack's
/// own split (the conntrack CLI in the node namespace) on a kube-proxy (iptables) lab node.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn prometheus_sees_the_backends_conntrack_saw() {
    use support::kube::{connect_n, conntrack_split, lab_up, start_servers};
    let lab = support::unique("ak");
    let net = 70;
    let _guard = lab_up(&lab, "iptables", net);
    let (node, client) = (format!("{lab}-node"), format!("{lab}-client"));
    let _servers = start_servers(&lab);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _agent = Inspector::start(&[
        "agent",
        "-q",
        "--interval",
        "0.5",
        "--listen",
        &listen,
        "--netns",
        &client,
        "--netns",
        &node,
    ]);
    let prom = Prometheus::start(port);
    let vip = format!("198.18.{}.10", net + 2);
    assert_eq!(connect_n(&client, &format!("{vip}:80"), 60), 60);
    let ct: HashMap<String, u64> = conntrack_split(&node, &vip, 80).into_iter().collect();
    assert_eq!(ct.values().sum::<u64>(), 60, "{ct:?}");
    let q = "sum by (backend) (inspector_service_connections_total{service=\"shop/web:http\"})";
    let mut got = HashMap::new();
    let agreed = eventually(Duration::from_secs(30), || {
        got = prom.query(q);
        let as_ct: HashMap<String, u64> = got
            .iter()
            .map(|(k, v)| (k.trim_start_matches("backend=").to_owned(), *v as u64))
            .collect();
        as_ct == ct
    });
    assert!(agreed, "PromQL {got:?} vs conntrack {ct:?}");

    // A netfilter drop on the node: a DROP rule in FORWARD for UDP :9999 to web1, 5
    // datagrams from the client. Prometheus shows them with the rule, as its counter says.
    let web1 = support::sh(&[
        "sh",
        "-c",
        &format!("ip -n {lab}-web1 -4 -o addr show dev eth0 | awk '{{print $4}}' | cut -d/ -f1"),
    ]);
    let web1 = web1.trim().to_owned();
    let drop_rule = ["FORWARD", "-p", "udp", "--dport", "9999", "-j", "DROP"];
    let ipt = |op: &str| {
        let mut a = vec!["netns", "exec", node.as_str(), "iptables", op];
        a.extend(drop_rule);
        assert!(Command::new("ip").args(&a).status().unwrap().success());
    };
    ipt("-I");
    let rule_packets = || {
        let out = support::sh(&[
            "sh",
            "-c",
            &format!("ip netns exec {node} iptables -L FORWARD 1 -v -x -n | awk '{{print $1}}'"),
        ]);
        out.trim().parse::<u64>().unwrap_or(0)
    };
    let ns_path = std::path::PathBuf::from(format!("/var/run/netns/{client}"));
    inspector::traffic::udp_send(&ns_path, format!("{web1}:9999").parse().unwrap(), 5, 32).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let counted = rule_packets();
    assert_eq!(counted, 5, "the DROP rule's counter");
    let q = "sum by (rule) (inspector_drops_total{reason=\"NETFILTER_DROP\"})";
    let mut drops = HashMap::new();
    let seen = eventually(Duration::from_secs(30), || {
        drops = prom.query(q);
        drops.iter().any(|(k, v)| {
            k.contains("FORWARD") && k.contains("--dport 9999") && *v as u64 == counted
        })
    });
    assert!(seen, "PromQL {drops:?} vs the rule's counter {counted}");
    // (The rule goes with the node's namespace if an assertion above fails.)
    ipt("-D");

    // The JSON API: filters as the CLI's, refused when unknown; Services; a path probe,
    // rate-limited.
    let flows = http_get(port, "/api/flows?service=shop/web").expect("api");
    assert_eq!(flows.0, 200);
    let recs = support::json_lines(flows.1.as_bytes(), "flow");
    assert!(!recs.is_empty(), "no flow of shop/web");
    assert!(
        recs.iter()
            .all(|f| f["service"]["namespace"] == "shop" && f["service"]["name"] == "web"),
        "{recs:?}"
    );
    let udp = http_get(port, &format!("/api/drops?proto=udp&port=9999&host={web1}")).unwrap();
    let d = support::json_lines(udp.1.as_bytes(), "drop");
    assert_eq!(
        d.iter()
            .map(|r| r["packets"].as_u64().unwrap())
            .sum::<u64>(),
        counted,
        "{d:?}"
    );
    assert!(
        d.iter().all(|r| r["dport"] == 9999),
        "the filter let others through: {d:?}"
    );
    let bad = http_get(port, "/api/flows?colour=blue").unwrap();
    assert_eq!(bad.0, 400);
    assert_eq!(bad.1.lines().count(), 1, "{}", bad.1);
    let svc = http_get(port, "/api/services?service=shop/web").unwrap();
    assert!(svc.1.contains("\"shop\""), "{}", svc.1);
    let path = http_get(port, &format!("/api/path?src={lab}-client&dst=shop/web:80")).unwrap();
    assert_eq!(path.0, 200, "{}", path.1);
    assert!(path.1.contains("\"delivered\""), "{}", path.1);
    let again = http_get(port, &format!("/api/path?src={lab}-client&dst=shop/web:80")).unwrap();
    assert_eq!(again.0, 429, "{}", again.1);
}

/// `inspector_hop_latency_seconds` is filled from the kernel's per-hop histograms: behind a
/// tbf queue (1 ms per 1000-byte frame), 20 frames sent at once wait 0..19 ms between the
/// sender's eth0 and its bridge port. `trace --hops` (per-packet events, another mechanism
/// and attachment) times each frame; every `le` bucket Prometheus holds for that hop counts
/// exactly the traced waits below it, except a wait within 20 us of the edge.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn prometheus_histogram_holds_the_hop_times_the_tracer_saw() {
    let lab = support::tbf_lab("al");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let filter = ["--proto", "udp", "--port", "7320"];
    let mut args = vec!["agent", "-q", "--interval", "0.5", "--listen", &listen];
    for n in [&lab.a.name, &lab.br.name, &lab.b.name] {
        args.extend(["--netns", n.as_str()]);
    }
    args.extend(filter);
    let _agent = Inspector::start(&args);
    let tracer = support::hops_tracer(&lab, &filter);
    let prom = Prometheus::start(port);
    support::udp_frames(&lab, 20, 7320);
    let at = |dev: &str, hook: &str| format!("{dev}/{hook}");
    let a_eth0 = format!("{}/eth0", lab.a.name);
    let va = format!("{}/va", lab.br.name);
    tracer.wait_json(Duration::from_secs(20), |r| {
        r.iter()
            .filter(|p| p["type"] == "packet_hops" && p["len"] == 1000)
            .count()
            >= 20
    });
    let out = tracer.interrupt();
    let mut waits: Vec<u64> = Vec::new();
    for p in support::json_lines(&out.stdout, "packet_hops") {
        if p["src"] != "198.18.0.2" || p["len"].as_u64() != Some(1000) {
            continue;
        }
        let names = support::hop_names(&p, "hook");
        let ts = |name: &str| {
            let i = names.iter().position(|n| n == name).expect(name);
            p["hops"][i]["ts_ns"].as_u64().unwrap()
        };
        waits.push(ts(&at(&va, "tc-ingress")) - ts(&at(&a_eth0, "tc-egress")));
    }
    assert_eq!(waits.len(), 20, "{waits:?}");
    assert!(
        waits.iter().filter(|w| **w > 4_000_000).count() >= 10,
        "the tbf queue did not hold the frames: {waits:?}"
    );
    let q = format!(
        "sum by (le) (inspector_hop_latency_seconds_bucket{{from_hop=\"{}/eth0(out)\",to_hop=\"{}/va(in)\"}})",
        lab.a.name, lab.br.name
    );
    let mut got: Vec<(f64, u64)> = Vec::new();
    let agreed = eventually(Duration::from_secs(30), || {
        got = prom
            .query(&q)
            .into_iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix("le=")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, v as u64))
            })
            .collect();
        got.sort_by(|a, b| a.0.total_cmp(&b.0));
        got.last().is_some_and(|l| l.1 == 20)
    });
    assert!(agreed, "the +Inf bucket never held the 20 frames: {got:?}");
    assert_eq!(got.len(), 22, "{got:?}");
    for (le, n) in &got {
        let edge = le * 1e9;
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
        let below = waits.iter().filter(|w| (**w as f64) < edge).count() as u64;
        #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
        let near = waits
            .iter()
            .filter(|w| ((**w as f64) - edge).abs() < 20_000.0)
            .count() as u64;
        assert!(
            n.abs_diff(below) <= near,
            "le {le}: Prometheus {n}, traced waits below it {below}: {waits:?} {got:?}"
        );
    }
    let sum = prom.query(&format!(
        "sum(inspector_hop_latency_seconds_sum{{from_hop=\"{}/eth0(out)\",to_hop=\"{}/va(in)\"}})",
        lab.a.name, lab.br.name
    ));
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
    let traced: f64 = waits.iter().map(|w| *w as f64 / 1e9).sum();
    let s = sum.values().next().copied().unwrap_or(0.0);
    assert!(
        (s - traced).abs() <= 0.01 * traced,
        "sum {s} vs traced {traced}"
    );
}

/// A crash leaves nothing either: an agent killed with SIGKILL (no handler runs) held TCX
/// links and programs that the kernel releases with its descriptors.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_killed_agent_leaves_nothing_attached() {
    let lab = BridgeLab::new("ax");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let agent = Inspector::start(&[
        "agent",
        "-q",
        "--listen",
        &listen,
        "--netns",
        &lab.a.name,
        "--netns",
        &lab.br.name,
    ]);
    let held = held_objects(agent.pid());
    assert!(!held.links.is_empty(), "the agent held no link: vacuous");
    let out = agent.signal(libc::SIGKILL);
    assert!(!out.status.success());
    assert!(eventually(Duration::from_secs(10), || {
        let o = bpf_objects();
        held.progs.iter().all(|id| !o.progs.contains_key(id))
            && held.links.iter().all(|id| !o.links.contains_key(id))
    }));
}
