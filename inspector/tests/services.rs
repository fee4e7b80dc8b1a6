//! Service routing on a lab node with kube-proxy's exact rules, in iptables and in nftables
//! mode: the per-backend split the inspector reports equals conntrack's (the CLI, an
//! independent reader) and the accepts the three servers counted; `ClientIP` affinity pins;
//! a `NodePort` from outside is masqueraded; a Service without endpoints is refused and the
//! REJECT is named; a DROP rule in FORWARD is named with reason and interface; `path` shows
//! each hop, checked against iproute2's veth peers and conntrack.
mod support;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::Value;
use support::{
    Inspector, bin, json_lines,
    kube::{
        client_backends, connect_n, conntrack_split, in_netns, lab_up, node_veth, probe_web, spec,
        start_servers,
    },
    run_inspector, sh, unique,
};

fn run_mode(mode: &str, net: u8) {
    let lab = unique("s");
    let _guard = lab_up(&lab, mode, net);
    let (node, client, ext) = (
        format!("{lab}-node"),
        format!("{lab}-client"),
        format!("{lab}-ext"),
    );
    let svc = |last: u8| format!("198.18.{}.{last}", net + 2);
    let ip = |last: u8| format!("198.18.{net}.{last}");

    // The service table, against the spec and kube-proxy's chain-name hash.
    let out = run_inspector(&["-o", "json", "services", "--lab", &lab], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = json_lines(&out.stdout, "service");
    assert_eq!(table.len(), 3, "{table:?}");
    let by = |n: &str| table.iter().find(|s| s["name"] == n).unwrap().clone();
    let web = by("web");
    let eps: Vec<String> = (2..=4).map(|i| format!("{}:8080", ip(i))).collect();
    assert_eq!(web["endpoints"], serde_json::json!(eps));
    assert_eq!(web["cluster_ip"], svc(10));
    assert_eq!(web["node_port"], 30080);
    assert_eq!(web["mode"], mode);
    let want_chain = if mode == "iptables" {
        format!(
            "KUBE-SVC-{}",
            inspector::services::port_proto_hash("shop/web:http", "tcp")
        )
    } else {
        format!(
            "service-{}",
            inspector::services::nft_service_base("shop", "web", "tcp", "http")
        )
    };
    assert_eq!(web["chain"], want_chain.as_str());
    assert_eq!(by("sticky")["affinity"], true);
    assert_eq!(by("empty")["endpoints"], serde_json::json!([]));
    let ipvs = json_lines(&out.stdout, "ipvs");
    assert!(!std::path::Path::new("/proc/net/ip_vs").exists());
    assert!(
        ipvs[0]["state"].as_str().unwrap().starts_with("no IPVS"),
        "{ipvs:?}"
    );

    let servers = start_servers(&lab);
    // 300 connections to the ClusterIP, 20 to the sticky one, 1 NodePort from outside.
    let support::kube::ServiceTraffic {
        flows,
        before_sticky,
        accepts,
    } = support::kube::service_traffic(&lab, net, &servers, Duration::from_millis(100));

    // Per backend: distinct client ports the inspector attributed at the client's eth0.
    let mut split = client_backends(&flows, &client, |fl| {
        if fl["service"]["name"] == "sticky" {
            assert_eq!(fl["backend"]["affinity"], true);
        }
    });
    let ours = split.remove("web").unwrap_or_default();
    let sticky = split.remove("sticky").unwrap_or_default();
    let ct = conntrack_split(&node, &svc(10), 80);
    let servers_saw: BTreeMap<String, u64> = eps
        .iter()
        .zip(&before_sticky)
        .map(|(e, n)| (e.clone(), *n))
        .collect();
    eprintln!("{mode}: inspector {ours:?} conntrack {ct:?} servers {servers_saw:?}");
    assert_eq!(ours.values().sum::<u64>(), 300, "{ours:?}");
    assert_eq!(ours, ct, "inspector vs conntrack");
    assert_eq!(ours, servers_saw, "inspector vs the servers' accepts");
    assert!(ours.len() == 3, "300 connections used only {ours:?}");
    // Affinity: one backend for all 20, as the servers saw.
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    assert_eq!(sticky.values().sum::<u64>(), 20);
    let pinned = sticky.keys().next().unwrap();
    let pinned_idx = eps.iter().position(|e| e == pinned).unwrap();
    assert!(accepts[pinned_idx] >= before_sticky[pinned_idx] + 20);

    // NodePort from outside: attributed, masqueraded to the bridge's address (conntrack's
    // reply destination), and that source is what the backend's veth saw.
    let np = flows
        .iter()
        .find(|fl| fl["netns_name"] == ext.as_str() && fl["service"]["via"] == "NodePort")
        .unwrap_or_else(|| panic!("no NodePort flow at {ext}"));
    let snat = np["nat"]["snat"].as_str().expect("masquerade");
    let masq_ip = ip(1);
    assert!(snat.contains(&format!("-> {masq_ip}:")), "{snat}");
    let backend = np["backend"]["endpoint"].as_str().unwrap();
    assert!(flows.iter().any(|fl| fl["netns_name"] == node.as_str()
        && fl["src"] == masq_ip.as_str()
        && format!("{}:{}", fl["dst"].as_str().unwrap_or(""), fl["dport"]) == backend));
    drop(servers);

    // `path`, hop by hop, against iproute2 (veth peers) and conntrack (the backend).
    let servers = start_servers(&lab);
    let p = &probe_web(&lab);
    assert_eq!(p["verdict"], "delivered", "{p}");
    assert_eq!(p["service"]["chain"], want_chain.as_str());
    let be = p["backend"]["endpoint"].as_str().unwrap();
    let be_workload = p["backend"]["workload"].as_str().unwrap().to_owned();
    assert_eq!(
        be,
        format!(
            "{}:8080",
            ip(2 + u8::try_from(
                ["web1", "web2", "web3"]
                    .iter()
                    .position(|w| *w == be_workload)
                    .unwrap()
            )
            .unwrap())
        )
    );
    let sport = p["nat"]["original"]
        .as_str()
        .unwrap()
        .split(" -> ")
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let ct_line = sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "conntrack",
        "-L",
        "-p",
        "tcp",
        "--sport",
        &sport,
    ]);
    assert!(
        ct_line.contains(&format!("src={} ", be.split(':').next().unwrap())),
        "{ct_line}"
    );
    let hops: Vec<(String, String)> = p["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            if h["kind"] == "nat" {
                ("nat".into(), h["detail"].as_str().unwrap().to_owned())
            } else {
                (
                    format!(
                        "{}/{}",
                        h["netns_name"].as_str().unwrap(),
                        h["ifname"].as_str().unwrap()
                    ),
                    h["direction"].as_str().unwrap().to_owned(),
                )
            }
        })
        .collect();
    let client_veth = node_veth(&lab, "client");
    let be_veth = node_veth(&lab, &be_workload);
    let pos = |name: &str, dir: &str| {
        hops.iter()
            .position(|(n, d)| n == name && d == dir)
            .unwrap_or_else(|| panic!("no hop {name} {dir} in {hops:?}"))
    };
    let at_client = pos(&format!("{client}/eth0"), "egress");
    let at_node_in = pos(&format!("{node}/{client_veth}"), "ingress");
    let at_nat = hops.iter().position(|(k, _)| k == "nat").expect("nat hop");
    let at_node_out = pos(&format!("{node}/{be_veth}"), "egress");
    let at_backend = pos(&format!("{lab}-{be_workload}/eth0"), "ingress");
    assert!(
        at_client < at_node_in
            && at_node_in < at_nat
            && at_nat < at_node_out
            && at_node_out < at_backend,
        "{hops:?}"
    );
    let nat = &hops[at_nat].1;
    assert!(
        nat.contains(&want_chain) && nat.contains(&format!("pod {be_workload}")),
        "{nat}"
    );
    assert!(
        nat.contains(p["backend"]["chain"].as_str().unwrap()),
        "{nat}"
    );
    assert!(!p["reply_hops"].as_array().unwrap().is_empty());
    // --watch: the next real connection from the client to the Service, not a probe. One
    // connection, made once it says it is attached.
    let ready = std::env::temp_dir().join(format!("{}.ready", unique("w")));
    let watch = std::process::Command::new(bin())
        .args([
            "-o",
            "json",
            "path",
            &format!("{lab}/client"),
            "shop/web",
            "--watch",
            "--timeout",
            "20",
            "--ready-file",
        ])
        .arg(&ready)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        support::eventually(Duration::from_secs(30), || ready.exists()),
        "path --watch never became ready"
    );
    let _ = std::fs::remove_file(&ready);
    assert_eq!(connect_n(&client, &format!("{}:80", svc(10)), 1), 1);
    let out = support::wait_bounded(watch, Duration::from_secs(25));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = &json_lines(&out.stdout, "probe")[0];
    assert_eq!(w["verdict"], "delivered", "{w}");
    assert_eq!(w["service"]["name"], "web", "{w}");
    assert!(
        w["hops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "nat"),
        "{w}"
    );
    drop(servers);

    // `trace --service`: only packets of connections to that Service, on both sides of the
    // DNAT, each with its backend.
    let servers = start_servers(&lab);
    let insp = Inspector::start(&[
        "trace",
        "-o",
        "json",
        "-q",
        "--duration",
        "30",
        "--service",
        "shop/web",
        "--netns",
        &client,
        "--netns",
        &node,
    ]);
    assert_eq!(connect_n(&client, &format!("{}:80", svc(10)), 3), 3);
    assert_eq!(connect_n(&client, &format!("{}:80", svc(11)), 3), 3);
    // Streamed as they come: wait until the three connections were seen on both sides of
    // the DNAT.
    let done = |recs: &[Value]| {
        let pkts: Vec<&Value> = recs.iter().filter(|p| p["type"] == "packet").collect();
        let conns: std::collections::HashSet<&str> = pkts
            .iter()
            .filter_map(|p| p["nat"]["original"].as_str())
            .collect();
        conns.len() >= 3
            && pkts.iter().any(|p| p["dst"] == svc(10).as_str())
            && pkts.iter().any(|p| p["dst"] != svc(10).as_str())
    };
    insp.wait_json(Duration::from_secs(20), done);
    let out = insp.interrupt();
    let pkts = json_lines(&out.stdout, "packet");
    assert!(!pkts.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        pkts.iter().all(|p| p["service"]["name"] == "web"),
        "{pkts:#?}"
    );
    let conns: std::collections::HashSet<String> = pkts
        .iter()
        .map(|p| p["nat"]["original"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(conns.len(), 3, "{conns:?}");
    // Both sides of the DNAT: to the ClusterIP at the client, to a pod after it.
    assert!(pkts.iter().any(|p| p["dst"] == svc(10).as_str()));
    assert!(pkts.iter().any(|p| {
        eps.iter()
            .any(|e| e.starts_with(&format!("{}:", p["dst"].as_str().unwrap_or(""))))
    }));
    drop(servers);

    // No endpoints: refused, and the inspector names the REJECT.
    let refused = in_netns(&client, {
        let d: SocketAddr = format!("{}:80", svc(12)).parse().unwrap();
        move || TcpStream::connect_timeout(&d, Duration::from_secs(2)).map_err(|e| e.kind())
    })
    .join()
    .unwrap();
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));
    let p = &path_json(&lab, "shop/empty:80", "2");
    assert_eq!(p["verdict"], "refused", "{p}");
    assert_eq!(p["drop_reason"], "NETFILTER_DROP", "{p}");
    let rule = p["drop"]["rule"].as_str().unwrap();
    assert!(
        rule.contains("reject") && rule.contains("shop/empty:http has no endpoints"),
        "{rule}"
    );
    assert_eq!(p["drop"]["netns_name"], node.as_str());
    if mode == "iptables" {
        assert!(
            p["rules_hit"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("-j REJECT"),
            "{p}"
        );
    }

    // A DROP rule in the node's FORWARD chain: reason, interface and the rule.
    let web1 = ip(2);
    sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "iptables",
        "-I",
        "FORWARD",
        "1",
        "-s",
        &ip(5),
        "-d",
        &web1,
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "DROP",
    ]);
    let out = run_inspector(
        &[
            "-o",
            "json",
            "path",
            &format!("{lab}/client"),
            &format!("{web1}:8080"),
            "--timeout",
            "1",
        ],
        &[],
    );
    let p = &json_lines(&out.stdout, "probe")[0];
    assert_eq!(p["verdict"], "dropped", "{p}");
    assert_eq!(p["drop_reason"], "NETFILTER_DROP");
    assert_eq!(p["drop"]["netns_name"], node.as_str());
    assert!(!p["drop"]["ifname"].as_str().unwrap().is_empty());
    let rule = p["drop"]["rule"].as_str().unwrap();
    assert!(
        rule.starts_with("filter FORWARD") && rule.contains("-j DROP"),
        "{rule}"
    );
    // The same drop in `flows`: flow, interface, both ends named, and the rule.
    let insp = Inspector::start(&[
        "flows",
        "-o",
        "json",
        "-q",
        "--duration",
        "30",
        "--netns",
        &node,
    ]);
    let dst: SocketAddr = format!("{web1}:8080").parse().unwrap();
    let blocked = in_netns(&client, move || {
        TcpStream::connect_timeout(&dst, Duration::from_millis(800)).is_ok()
    })
    .join()
    .unwrap();
    assert!(!blocked, "the DROP rule let a connection through");
    let out = insp.interrupt();
    let drops = json_lines(&out.stdout, "drop");
    let d = drops
        .iter()
        .find(|d| {
            d["reason"] == "NETFILTER_DROP" && d["dst"] == web1.as_str() && d["dport"] == 8080
        })
        .unwrap_or_else(|| panic!("no NETFILTER_DROP to {web1}:8080 in {drops:#?}"));
    assert_eq!(d["netns_name"], node.as_str());
    assert!(!d["ifname"].as_str().unwrap().is_empty());
    assert_eq!(d["src_endpoint"]["name"], "client", "{d}");
    assert_eq!(d["dst_endpoint"]["name"], "web1", "{d}");
    assert!(
        d["rule"].as_str().unwrap().starts_with("filter FORWARD"),
        "{d}"
    );
    // The freeing call site is a real kernel function.
    let func = d["location"]
        .as_str()
        .unwrap()
        .split('+')
        .next()
        .unwrap()
        .to_owned();
    assert!(!func.is_empty(), "{d}");
    let syms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    assert!(
        syms.lines().any(|l| l.ends_with(&format!(" {func}"))),
        "{func}"
    );
    let saved = sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "iptables-save",
        "-c",
        "-t",
        "filter",
    ]);
    let counted = saved
        .lines()
        .find(|l| l.contains("-A FORWARD") && l.contains("-j DROP") && l.contains(&web1))
        .unwrap();
    assert!(!counted.starts_with("[0:"), "{counted}");
    path_tells_every_attempt(&lab, net, &node);
    path_names_the_kernels_cause_not_the_services_shape(&lab, net, &node);
}

/// `inspector -o json path LAB/client DST --timeout SECS`: its probe record.
fn path_json(lab: &str, dst: &str, secs: &str) -> serde_json::Value {
    let out = run_inspector(
        &[
            "-o",
            "json",
            "path",
            &format!("{lab}/client"),
            dst,
            "--timeout",
            secs,
        ],
        &[],
    );
    json_lines(&out.stdout, "probe")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no probe record: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The packet counter of the node's FORWARD DROP rule naming `ip`, as iptables-save counts.
fn drop_rule_packets(node: &str, ip: &str) -> u64 {
    let saved = sh(&[
        "ip",
        "netns",
        "exec",
        node,
        "iptables-save",
        "-c",
        "-t",
        "filter",
    ]);
    saved
        .lines()
        .find(|l| {
            l.contains("-A FORWARD") && l.contains("-j DROP") && l.contains(&format!("-d {ip}/32"))
        })
        .and_then(|l| l.strip_prefix('[')?.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no FORWARD DROP rule for {ip}:\n{saved}"))
}

/// Two of shop/web's three backends dropped in FORWARD (web1 by the rule above, web2 by a
/// new one): a connect to the Service retries until a SYN is sent on to `web3`. `path`
/// shows every SYN with its own backend and fate; the oracles are each DROP rule's counter
/// (it grew by the attempts `path` sent to its backend) and the servers' accepts (web3
/// accepted exactly once).
fn path_tells_every_attempt(lab: &str, net: u8, node: &str) {
    let ip = |last: u8| format!("198.18.{net}.{last}");
    let (web1, web2, web3) = (ip(2), ip(3), ip(4));
    let rule = |op: &str| {
        sh(&[
            "ip", "netns", "exec", node, "iptables", op, "FORWARD", "-d", &web2, "-p", "tcp",
            "--dport", "8080", "-j", "DROP",
        ])
    };
    rule("-I");
    let servers = start_servers(lab);
    let accepts = || {
        servers
            .iter()
            .map(support::kube::Server::count)
            .collect::<Vec<_>>()
    };
    // A connect whose first SYN went to web3 has one attempt: try again (2 in 3 do not).
    for _ in 0..10 {
        let counters = (
            drop_rule_packets(node, &web1),
            drop_rule_packets(node, &web2),
        );
        let before = accepts();
        let p = path_json(lab, "shop/web", "15");
        let attempts = p["attempts"].as_array().unwrap().clone();
        assert!(!attempts.is_empty(), "{p}");
        let after = accepts();
        // Each dropped attempt went to web1 or web2 and was dropped in the node by the DROP
        // rule for its backend; returns how many went to each, and how many path saw leave
        // but not die ("unanswered": a CI run under load had one such SYN mid-connect).
        let dropped = |tried: &[Value]| {
            let mut sent = std::collections::BTreeMap::<String, u64>::new();
            let mut unseen = 0;
            for a in tried {
                if a["fate"] == "unanswered" && a["backend"].is_null() {
                    unseen += 1;
                    continue;
                }
                assert_eq!(a["fate"], "dropped", "{a}");
                let b = a["backend"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches(":8080")
                    .to_owned();
                assert!(b == web1 || b == web2, "{a}");
                assert_eq!(a["drop"]["reason"], "NETFILTER_DROP", "{a}");
                assert_eq!(a["drop"]["netns_name"], node, "{a}");
                let r = a["drop"]["rule"].as_str().unwrap();
                assert!(
                    r.contains(&format!("-d {b}/32")) && r.contains("-j DROP"),
                    "{a}"
                );
                *sent.entry(b).or_default() += 1;
            }
            (
                sent.get(&web1).copied().unwrap_or(0),
                sent.get(&web2).copied().unwrap_or(0),
                unseen,
            )
        };
        let grown = || {
            (
                drop_rule_packets(node, &web1) - counters.0,
                drop_rule_packets(node, &web2) - counters.1,
            )
        };
        let (last, tried) = attempts.split_last().unwrap();
        if p["verdict"] != "delivered" {
            // Every SYN sent within the timeout was DNATed to a dropped backend ((2/3)^8,
            // about 1 in 26): nothing reached a server, and every attempt but a last one
            // still in flight was dropped by its backend's rule.
            assert_eq!(after, before, "{p}");
            assert!(
                last["fate"] == "dropped" || last["fate"] == "unanswered",
                "{p}"
            );
            let mut all = tried.to_vec();
            if last["fate"] == "dropped" {
                all.push(last.clone());
            }
            let sent = dropped(&all);
            let g = grown();
            // Backend by backend; the last attempt, still in flight, may have been counted
            // by its rule after path stopped looking, and an attempt whose drop path did not
            // see has no backend.
            let fits = |g: u64, s: u64| (s..=s + 1 + sent.2).contains(&g);
            assert!(
                fits(g.0, sent.0)
                    && fits(g.1, sent.1)
                    && (sent.0 + sent.1 + sent.2..=sent.0 + sent.1 + sent.2 + 1)
                        .contains(&(g.0 + g.1)),
                "the DROP rules' counters {g:?} vs the attempts path sent {sent:?}: {p}"
            );
            continue;
        }
        assert_eq!(after[2], before[2] + 1, "web3 accepts: {p}");
        assert_eq!((after[0], after[1]), (before[0], before[1]), "{p}");
        assert_eq!(last["fate"], "answered", "{p}");
        assert_eq!(last["backend"], format!("{web3}:8080").as_str(), "{p}");
        assert_eq!(last["backend_workload"], "web3", "{p}");
        let (sent, g) = (dropped(tried), grown());
        if sent.2 == 0 {
            assert_eq!(
                g,
                (sent.0, sent.1),
                "the DROP rules' counters vs the attempts path sent to their backends: {p}"
            );
        } else {
            // An attempt whose drop path did not see: its backend is unknown.
            assert!(
                g.0 >= sent.0 && g.1 >= sent.1 && g.0 + g.1 == sent.0 + sent.1 + sent.2,
                "the DROP rules' counters {g:?} vs the attempts path sent {sent:?}: {p}"
            );
        }
        if attempts.len() < 2 {
            continue;
        }
        let cause = p["cause"].as_str().unwrap();
        assert!(
            cause.starts_with(&format!("{} attempts", attempts.len()))
                && cause.contains("load-balanced afresh"),
            "{cause}"
        );
        rule("-D");
        return;
    }
    panic!("10 connects, none with a dropped attempt before the open backend answered");
}

/// shop/empty has no endpoints, and the node loses its route to the Service range: the
/// packet dies in routing (the kernel's `InNoRoutes` counter grows), before the Service's
/// REJECT rule (whose counter does not). `path` names the kernel's reason and says the rule
/// did not fire, instead of blaming the rule.
fn path_names_the_kernels_cause_not_the_services_shape(lab: &str, net: u8, node: &str) {
    let range = format!("198.18.{}.0/24", net + 2);
    let no_routes = || -> u64 {
        let snmp = sh(&["ip", "netns", "exec", node, "cat", "/proc/net/netstat"]);
        let mut ip = snmp.lines().filter(|l| l.starts_with("IpExt:"));
        let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
        let i = names
            .split_whitespace()
            .position(|n| n == "InNoRoutes")
            .unwrap();
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    sh(&["ip", "-n", node, "route", "del", &range]);
    let before = no_routes();
    let p = path_json(lab, "shop/empty:80", "2");
    let grown = no_routes() - before;
    sh(&[
        "ip", "-n", node, "route", "add", &range, "dev", "cni0", "proto", "static",
    ]);
    assert!(grown >= 1, "InNoRoutes did not grow: {p}");
    assert_eq!(p["verdict"], "dropped", "{p}");
    assert_eq!(p["drop_reason"], "IP_INNOROUTES", "{p}");
    assert_eq!(p["drop"]["netns_name"], node, "{p}");
    assert!(p["drop"]["rule"].is_null(), "no rule dropped it: {p}");
    assert!(
        p["rules_hit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !h["rule"].as_str().unwrap().contains("REJECT")),
        "{p}"
    );
    let cause = p["cause"].as_str().unwrap();
    assert!(
        cause.contains("IP_INNOROUTES")
            && cause.contains("no route to")
            && cause.contains("has no endpoints")
            && cause.contains("did not fire"),
        "{cause}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn iptables_mode_split_affinity_nodeport_reject_drop_and_path() {
    run_mode("iptables", 70);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn nftables_mode_split_affinity_nodeport_reject_drop_and_path() {
    run_mode("nftables", 74);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bad_service_input_is_one_line_and_changes_nothing() {
    let lab = unique("b");
    for (edit, want) in [
        (
            ("kube_proxy = \"iptables\"", "kube_proxy = \"ipvs\""),
            "kube_proxy ipvs needs a kernel with IPVS",
        ),
        (
            (
                "endpoints = [\"web1\", \"web2\", \"web3\"]",
                "endpoints = [\"nope\"]",
            ),
            "names no workload",
        ),
        (
            ("node_port = 30080", "node_port = 80"),
            "outside 30000-32767",
        ),
        (
            (
                "cluster_ip = \"198.18.92.10\"",
                "cluster_ip = \"203.0.113.10\"",
            ),
            "outside service_cidr",
        ),
    ] {
        let text = spec(&lab, "iptables", 90).replacen(edit.0, edit.1, 1);
        assert_ne!(
            text,
            spec(&lab, "iptables", 90),
            "edit {edit:?} did not apply"
        );
        let f = std::env::temp_dir().join(format!("{}.toml", unique("bad")));
        std::fs::write(&f, text).unwrap();
        let out = run_inspector(&["lab", "up", "--spec", f.to_str().unwrap()], &[]);
        let _ = std::fs::remove_file(&f);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
    for (args, want) in [
        (
            vec!["flows", "--service", "Bad_Name", "--duration", "1"],
            "NAMESPACE/NAME",
        ),
        (
            vec!["flows", "--service", "nope/nothing", "--duration", "1"],
            "no Service 'nope/nothing'",
        ),
        (vec!["path", "host", "198.18.0.1"], "needs a port"),
        (
            vec!["path", "no-such-thing", "198.18.0.1:80"],
            "is no container",
        ),
        (
            vec!["path", "host", "198.18.0.1:80", "--proto", "icmp"],
            "tcp or udp",
        ),
    ] {
        let out = run_inspector(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Nothing of the rejected labs exists (other tests may run labs meanwhile).
    assert!(
        !sh(&["ip", "netns", "list"]).contains(&format!("{lab}-")),
        "a rejected lab left namespaces"
    );
    assert!(!std::path::Path::new(&format!("/run/inspector/labs/{lab}.json")).exists());
}

/// Following rules without dumping them: a node's change stamp stays put while packets only
/// move counters, and moves with every rule change - through iptables-nft, nft, and legacy
/// iptables (each rule installed here is the oracle).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_rules_stamp_moves_with_rules_and_not_with_counters() {
    use inspector::services::stamp;
    let ns = support::Netns::new(&support::unique("stamp"));
    let path = ns.path();
    let of = || stamp::of(Some(path.as_path()));
    let s0 = of();
    assert!(s0.complete(), "{s0:?}");
    assert!(s0.nft_gen.is_some(), "nftables' generation id: {s0:?}");
    assert_eq!(of(), s0, "nothing changed");
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    // iptables (nf_tables backend), then packets that only move its counters.
    ns.exec(&["iptables", "-A", "OUTPUT", "-p", "icmp", "-j", "ACCEPT"]);
    let s1 = of();
    assert_ne!(
        s1.nft_gen, s0.nft_gen,
        "iptables-nft rule: {s0:?} -> {s1:?}"
    );
    ns.exec(&["ping", "-c", "2", "-i", "0.2", "127.0.0.1"]);
    assert_eq!(of(), s1, "counters are no change");
    ns.exec(&["nft", "add", "table", "ip", "kube-proxy"]);
    let s2 = of();
    assert_ne!(s2.nft_gen, s1.nft_gen, "nft table");
    // Legacy iptables: the table's blob changes with a rule, not with its counters.
    ns.exec(&[
        "iptables-legacy",
        "-A",
        "OUTPUT",
        "-p",
        "icmp",
        "-j",
        "ACCEPT",
    ]);
    let s3 = of();
    let filter = |s: &stamp::Stamp| {
        s.legacy
            .iter()
            .find(|(t, _)| t == "filter")
            .and_then(|(_, h)| *h)
    };
    assert!(filter(&s3).is_some(), "legacy filter table read: {s3:?}");
    assert!(s3.complete());
    ns.exec(&["ping", "-c", "2", "-i", "0.2", "127.0.0.1"]);
    assert_eq!(of(), s3, "legacy counters are no change");
    ns.exec(&[
        "iptables-legacy",
        "-R",
        "OUTPUT",
        "1",
        "-p",
        "icmp",
        "-j",
        "DROP",
    ]);
    let s4 = of();
    assert_ne!(filter(&s4), filter(&s3), "a legacy rule replaced in place");
    assert_eq!(
        s4.nft_gen, s3.nft_gen,
        "legacy changes leave nftables alone"
    );
}
