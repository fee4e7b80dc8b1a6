//! The main job: `inspector demo` builds the four-mode lab, drives traffic as its workloads,
//! shows each flow's path hop by hop with who is at each end, and removes everything.
mod support;

use serde_json::Value;
use support::{json_lines, run_inspector};

fn hops(p: &Value) -> Vec<String> {
    support::hop_names(p, "direction")
}

fn name(p: &Value, end: &str) -> String {
    p[end]["name"].as_str().unwrap_or("-").to_owned()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn demo_shows_paths_and_owners_and_cleans_up() {
    let out = run_inspector(&["demo", "-o", "json"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {err}");
    assert!(!err.contains("FAILED"), "some demo traffic failed: {err}");
    let paths = json_lines(&out.stdout, "path");
    // An end is `src`/`sport` and `dst`/`dport` in every record; "ip:port" names both here.
    let end = |p: &Value, ip: &str, port: &str| {
        format!(
            "{}:{}",
            p[ip].as_str().unwrap_or("-"),
            p[port].as_u64().map(|n| n.to_string()).unwrap_or_default()
        )
    };
    let find = |proto: &str, src: &str, dst: &str| {
        paths
            .iter()
            .find(|p| {
                p["proto"] == proto
                    && end(p, "src", "sport").starts_with(src)
                    && end(p, "dst", "dport").starts_with(dst)
            })
            .unwrap_or_else(|| panic!("no {proto} path {src} -> {dst}: {paths:#?}"))
    };
    // Bridge mode: container eth0 -> its bridge port -> the other's port -> its eth0.
    let web = find("tcp", "198.18.20.3:", "198.18.20.2:80");
    let h = hops(web);
    assert_eq!(h.len(), 4, "{h:?}");
    assert_eq!(h[0], "insp-demo-client/eth0/egress");
    assert!(
        h[1].starts_with("insp-demo-node/veth") && h[1].ends_with("/ingress"),
        "{h:?}"
    );
    assert!(
        h[2].starts_with("insp-demo-node/veth") && h[2].ends_with("/egress"),
        "{h:?}"
    );
    assert_eq!(h[3], "insp-demo-web/eth0/ingress");
    let pk: Vec<u64> = web["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["packets"].as_u64().unwrap())
        .collect();
    assert!(
        pk.iter().all(|p| *p == pk[0] && *p > 0),
        "same packets at every hop: {pk:?}"
    );
    assert_eq!(
        (name(web, "src_endpoint"), name(web, "dst_endpoint")),
        ("client".into(), "web".into())
    );
    assert_eq!(web["dst_endpoint"]["network_mode"], "bridge");
    // Container mode: same namespace as web, told apart by socket owner.
    let side = find("tcp", "198.18.20.3:", "198.18.20.2:81");
    assert_eq!(name(side, "dst_endpoint"), "sidecar");
    assert_eq!(side["dst_endpoint"]["network_mode"], "container:web");
    // Host mode: the node's own address, owned by the agent's socket.
    let agent = find("tcp", "198.18.20.1:", "198.18.20.2:80");
    assert_eq!(name(agent, "src_endpoint"), "agent");
    assert_eq!(hops(agent)[0], "insp-demo-node/docker0/egress");
    // None mode: over lo only.
    let batch = find("tcp", "127.0.0.1:", "127.0.0.1:80");
    assert_eq!(
        hops(batch),
        ["insp-demo-batch/lo/egress", "insp-demo-batch/lo/ingress"]
    );
    assert_eq!(
        (name(batch, "src_endpoint"), name(batch, "dst_endpoint")),
        ("batch".into(), "batch".into())
    );
    // ICMP into the shared namespace: no socket decides.
    let icmp = find("icmp", "198.18.20.3", "198.18.20.2");
    assert_eq!(name(icmp, "dst_endpoint"), "shared by sidecar, web");
    // Published port: the outside client's packets reach the node's 8080, and after DNAT
    // leave the bridge for web:80 with the client's address kept.
    let pre = find("tcp", "198.18.21.2:", "198.18.21.1:8080");
    assert!(
        hops(pre).last().unwrap().starts_with("insp-demo-node/ext"),
        "{pre}"
    );
    let post = find("tcp", "198.18.21.2:", "198.18.20.2:80");
    assert_eq!(hops(post)[0], "insp-demo-node/docker0/egress");
    assert_eq!(name(post, "dst_endpoint"), "web");
    assert!(
        post["src_endpoint"].is_null(),
        "the outside client is nobody's: {post}"
    );
    // MASQUERADE: web's connection leaves the node with the node's outside address.
    let masq = find("tcp", "198.18.21.1:", "198.18.21.2:9");
    assert!(hops(masq)[0].starts_with("insp-demo-node/ext"), "{masq}");
    // The closed UDP port: dropped by the kernel with its reason.
    let drops = json_lines(&out.stdout, "drop");
    assert!(
        drops
            .iter()
            .any(|d| d["dst"] == "198.18.21.2" && d["dport"] == 9 && d["reason"] == "NO_SOCKET"),
        "{drops:#?}"
    );
    // The Kubernetes part: a ClusterIP through kube-proxy's chains to a pod, a NodePort from
    // outside (masqueraded), a Service without endpoints (refused, the REJECT named).
    let probes = json_lines(&out.stdout, "probe");
    assert_eq!(probes.len(), 3, "{probes:#?}");
    let svc_chain = format!(
        "KUBE-SVC-{}",
        inspector::services::port_proto_hash("shop/web:http", "tcp")
    );
    let cluster = &probes[0];
    assert_eq!(cluster["verdict"], "delivered", "{cluster}");
    assert_eq!(cluster["service"]["chain"], svc_chain.as_str());
    assert!(
        ["web-0", "web-1", "web-2"]
            .contains(&cluster["backend"]["workload"].as_str().unwrap_or("")),
        "{cluster}"
    );
    assert!(
        cluster["hops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "nat"),
        "{cluster}"
    );
    let np = &probes[1];
    assert_eq!(np["service"]["via"], "NodePort", "{np}");
    assert!(
        np["nat"]["snat"]
            .as_str()
            .is_some_and(|s| s.contains("-> 198.18.30.1:")),
        "{np}"
    );
    let empty = &probes[2];
    assert_eq!(empty["verdict"], "refused", "{empty}");
    assert!(
        empty["drop"]["rule"]
            .as_str()
            .is_some_and(|r| r.contains("shop/empty:http has no endpoints")),
        "{empty}"
    );
    assert!(!std::path::Path::new("/run/inspector/labs/insp-demo-k.json").exists());
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("insp-demo-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "demo left namespaces behind: {left:?}");
    assert!(!std::path::Path::new("/run/inspector/labs/insp-demo.json").exists());
}
