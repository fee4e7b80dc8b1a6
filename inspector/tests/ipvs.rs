//! kube-proxy's IPVS mode, for real: a lab node built the way kube-proxy's IPVS proxier
//! builds one (`kube-ipvs0`, virtual servers, ipsets, its few iptables rules), checked
//! against `ipvsadm -L -n --stats` (the kernel's own counters through an independent
//! reader), conntrack (the CLI) and the servers' accepts. Needs a kernel with `IP_VS`:
//! it runs in the kernel matrix's Linux 6.1 VM (`cargo xtask vmtest`); this project's host
//! kernel has none (`services.rs` checks that `services` says so there).
mod support;

use std::collections::BTreeMap;

use support::{
    json_lines,
    kube::{client_backends, conntrack_split, lab_up, probe_web, start_servers},
    run_inspector, sh,
};

/// `ipvsadm -L -n --stats` in `ns`: per real server of the virtual server `vs` ("ip:port"),
/// its connection count.
fn ipvsadm_conns(ns: &str, vs: &str) -> BTreeMap<String, u64> {
    let out = sh(&["ip", "netns", "exec", ns, "ipvsadm", "-L", "-n", "--stats"]);
    let mut m = BTreeMap::new();
    let mut inside = false;
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["TCP" | "UDP", addr, ..] => inside = *addr == vs,
            ["->", rs, conns, ..] if inside && rs.contains(':') => {
                m.insert((*rs).to_owned(), conns.parse().unwrap_or(0));
            }
            _ => {}
        }
    }
    m
}

#[test]
#[ignore = "privileged, needs IP_VS: runs in `cargo xtask vmtest`"]
fn ipvs_mode_services_split_affinity_nodeport_and_path() {
    let lab = support::unique("v");
    let net = 60;
    let _guard = lab_up(&lab, "ipvs", net);
    let (node, client, ext) = (
        format!("{lab}-node"),
        format!("{lab}-client"),
        format!("{lab}-ext"),
    );
    let vip = |last: u8| format!("198.18.{}.{last}", net + 2);
    let ip = |last: u8| format!("198.18.{net}.{last}");
    let eps: Vec<String> = (2..=4).map(|i| format!("{}:8080", ip(i))).collect();

    // The table, read over netlink, against the rules installed and ipvsadm's listing.
    let out = run_inspector(&["-o", "json", "services", "--lab", &lab], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = json_lines(&out.stdout, "service");
    let by = |n: &str| {
        table
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {table:?}"))
            .clone()
    };
    let web = by("web");
    assert_eq!(web["mode"], "ipvs");
    assert_eq!(web["cluster_ip"], vip(10));
    assert_eq!(web["node_port"], 30080);
    assert_eq!(web["chain"], format!("IPVS {}:80 rr", vip(10)).as_str());
    let mut got: Vec<String> = web["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, eps);
    let listed = ipvsadm_conns(&node, &format!("{}:80", vip(10)));
    assert_eq!(
        listed.keys().cloned().collect::<Vec<_>>(),
        eps,
        "ipvsadm lists the same real servers"
    );
    assert_eq!(by("sticky")["affinity"], true);
    assert!(by("sticky")["node_port"].is_null(), "{:?}", by("sticky"));
    assert_eq!(by("empty")["endpoints"], serde_json::json!([]));
    let state = json_lines(&out.stdout, "ipvs");
    assert!(
        state
            .iter()
            .any(|s| s["state"].as_str().unwrap_or("").starts_with("IPVS in use")),
        "{state:?}"
    );

    let servers = start_servers(&lab);
    let support::kube::ServiceTraffic {
        flows,
        before_sticky,
        ..
    } = support::kube::service_traffic(&lab, net, &servers, std::time::Duration::from_millis(200));
    let mut split = client_backends(&flows, &client, |_| {});
    let ours = split.remove("web").unwrap_or_default();
    let sticky = split.remove("sticky").unwrap_or_default();
    let ct = conntrack_split(&node, &vip(10), 80);
    let adm = ipvsadm_conns(&node, &format!("{}:80", vip(10)));
    let servers_saw: BTreeMap<String, u64> = eps
        .iter()
        .cloned()
        .zip(before_sticky.iter().copied())
        .collect();
    eprintln!("ipvs: inspector {ours:?} conntrack {ct:?} ipvsadm {adm:?} servers {servers_saw:?}");
    assert_eq!(ours.values().sum::<u64>(), 300, "{ours:?}");
    assert_eq!(ours, ct, "inspector vs conntrack");
    assert_eq!(ours, adm, "inspector vs ipvsadm --stats");
    assert_eq!(ours, servers_saw, "inspector vs the servers' accepts");
    assert_eq!(ours.len(), 3, "rr used only {ours:?}");
    // Persistence (ClientIP affinity): one real server for all 20.
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    assert_eq!(sticky.values().sum::<u64>(), 20);
    // NodePort from outside, masqueraded by KUBE-NODE-PORT's mark.
    let np = flows
        .iter()
        .find(|fl| fl["netns_name"] == ext.as_str() && fl["service"]["name"] == "web")
        .unwrap_or_else(|| panic!("no NodePort flow at {ext}"));
    assert_eq!(np["service"]["via"], "NodePort", "{np}");
    assert!(
        np["nat"]["snat"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("-> {}:", ip(1)))),
        "{np}"
    );
    drop(servers);

    // `path` through IPVS: delivered, to a backend conntrack agrees on.
    let _servers = start_servers(&lab);
    let p = &probe_web(&lab);
    assert_eq!(p["verdict"], "delivered", "{p}");
    assert_eq!(p["service"]["mode"], "ipvs", "{p}");
    let be = p["backend"]["endpoint"].as_str().unwrap();
    assert!(eps.iter().any(|e| e == be), "{p}");
}
