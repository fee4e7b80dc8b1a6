//! The main job: `inspector demo` builds its lab, shows each flow's path hop by hop, and
//! removes everything it made.
mod support;

use support::{json_lines, run_inspector};

fn hops(p: &serde_json::Value) -> Vec<(String, String, String, u64)> {
    p["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["netns_name"].as_str().unwrap().to_owned(),
                h["ifname"].as_str().unwrap().to_owned(),
                h["direction"].as_str().unwrap().to_owned(),
                h["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn demo_shows_paths_and_cleans_up() {
    let out = run_inspector(&["demo", "-o", "json"], &[]);
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths = json_lines(&out.stdout, "path");
    let find = |proto: &str, dst_prefix: &str| {
        paths
            .iter()
            .find(|p| p["proto"] == proto && p["dst"].as_str().unwrap().starts_with(dst_prefix))
            .unwrap_or_else(|| panic!("no {proto} path to {dst_prefix}: {paths:#?}"))
    };
    // Bridged TCP: container eth0 -> bridge port -> bridge port -> container eth0.
    let tcp = hops(find("tcp", "198.18.0.4:8080"));
    let names: Vec<_> = tcp
        .iter()
        .map(|h| (h.0.as_str(), h.1.as_str(), h.2.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("insp-demo-a", "eth0", "egress"),
            ("insp-demo-node", "v-a", "ingress"),
            ("insp-demo-node", "v-c", "egress"),
            ("insp-demo-c", "eth0", "ingress"),
        ]
    );
    assert!(
        tcp.iter().all(|h| h.3 == tcp[0].3 && h.3 > 0),
        "same packets at every hop: {tcp:?}"
    );
    // Routed UDP: up through the bridge device into the node's stack, out of the routed veth.
    let udp = hops(find("udp", "198.18.1.2:5353"));
    let names: Vec<_> = udp
        .iter()
        .map(|h| format!("{}/{}/{}", h.0, h.1, h.2))
        .collect();
    assert_eq!(
        names,
        [
            "insp-demo-b/eth0/egress",
            "insp-demo-node/v-b/ingress",
            "insp-demo-node/br-demo/ingress",
            "insp-demo-node/x-ext/egress",
            "insp-demo-ext/eth0/ingress",
        ]
    );
    assert!(
        udp.iter().all(|h| h.3 == 20),
        "20 datagrams at every hop: {udp:?}"
    );
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("insp-demo-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "demo left namespaces behind: {left:?}");
}
