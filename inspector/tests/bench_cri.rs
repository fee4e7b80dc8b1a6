//! `inspector bench --runtime cri` on a real containerd with its CRI plugin and the CNI
//! bridge: pod to pod and pod to a `ClusterIP` Service in kube-proxy's iptables and nftables
//! modes each run every workload and report a rate and percentiles. While the run goes, the
//! pods are the runtime's own (listed through CRI) and the Service's rules send the
//! `ClusterIP` to the server pod's address (read from `iptables-save` and `nft`); afterwards
//! no pod, rule, table, bridge, mount or directory of the run is left, also after Ctrl-C.
mod support;

use std::time::Duration;

use support::{
    bench::{Bench, entry, report},
    cri::CriLab,
};

const WORKLOADS: [&str; 4] = ["rr", "crr", "stream", "udp-rr"];
const MODES: [&str; 3] = ["cri-pod", "cri-iptables", "cri-nftables"];

const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// One run at a time: each installs kube-proxy's rules on the node.
static NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn node() -> std::sync::MutexGuard<'static, ()> {
    NODE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kube_rules() -> (usize, bool) {
    let ipt = support::sh(&["iptables-save"])
        .lines()
        .filter(|l| l.contains("KUBE-"))
        .count();
    let nft = support::sh(&["nft", "list", "tables"]).contains("table ip kube-proxy");
    (ipt, nft)
}

/// What a run of pid `pid` may leave: its private runtime's directory, bridge, mounts,
/// cgroup, shims.
fn leftovers(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let dir = format!("insp-bench-cri-{pid}");
    if std::env::temp_dir().join(&dir).exists() {
        out.push(format!("directory {dir}"));
    }
    if std::path::Path::new(&format!("/sys/class/net/ibc{pid}")).exists() {
        out.push(format!("bridge ibc{pid}"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mounts.contains(&dir) {
        out.push("mounts".into());
    }
    if std::path::Path::new(&format!("/sys/fs/cgroup/{dir}")).exists() {
        out.push(format!("cgroup {dir}"));
    }
    let shims = support::sh(&["ps", "-eo", "args"]);
    if shims
        .lines()
        .any(|l| l.contains("containerd-shim") && l.contains(&dir))
    {
        out.push("shims".into());
    }
    let (ipt, nft) = kube_rules();
    if ipt > 0 || nft {
        out.push(format!(
            "kube-proxy rules: {ipt} iptables lines, nft table {nft}"
        ));
    }
    out
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cri_pods_run_every_workload_pod_to_pod_and_through_both_kube_proxy_modes() {
    let _node = node();
    assert_eq!(kube_rules(), (0, false), "kube-proxy rules before the run");
    let lab = CriLab::start(&support::unique("bc"));
    let socket = lab.socket.display().to_string();
    let before = support::bpf_objects();
    let b = Bench::start(&[
        "--runtime",
        "cri",
        "--cri-socket",
        &socket,
        "--workloads",
        "rr,crr,stream,udp-rr",
        "--run-secs",
        "0.2",
        "--repeat",
        "1",
        "--hops-secs",
        "0.5",
        "-o",
        "json",
    ]);
    let pid = b.pid();
    // While it runs: the two pods are the runtime's, and while each Service mode runs, its
    // rules (and only its) send its ClusterIP to the server pod.
    b.wait_said("over cri-");
    let pods = lab.listed();
    let srv = pods
        .iter()
        .find(|(n, _)| *n == format!("insp-bench/srv-{pid}"))
        .map(|p| p.1.clone())
        .expect("the server pod is listed by CRI");
    assert!(
        pods.iter()
            .any(|(n, _)| *n == format!("insp-bench/cli-{pid}")),
        "the client pod is listed by CRI: {pods:?}"
    );
    let mut ipt_seen = false;
    let mut nft_seen = false;
    let mut both = false;
    let mut doubled = false;
    assert!(
        support::eventually(Duration::from_mins(2), || {
            // nft read before and after iptables: both in place only if nft's rules were
            // there all along (a switch between modes in between shows as one missing).
            let nft_on = || {
                let nft = support::sh(&["nft", "list", "ruleset"]);
                nft.contains("198.18.129.20") && nft.contains(&srv)
            };
            let n = nft_on();
            let ipt = support::sh(&["iptables-save", "-t", "nat"]);
            let i = ipt.contains(&format!("--to-destination {srv}:9101"))
                && ipt.contains("-d 198.18.129.10/32");
            both |= n && i && nft_on();
            if i && !doubled {
                // A second copy of a jump (as a second writer would add): the chain stays
                // referenced after one delete, so the atomic undo is refused and the
                // one-by-one undo must remove both.
                doubled = std::process::Command::new("iptables")
                    .args(["-t", "nat", "-I", "PREROUTING", "1", "-m", "comment"])
                    .args([
                        "--comment",
                        "kubernetes service portals",
                        "-j",
                        "KUBE-SERVICES",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
            }
            ipt_seen |= i;
            nft_seen |= n;
            ipt_seen && nft_seen
        }),
        "rules sending the ClusterIPs to {srv}: iptables {ipt_seen}, nftables {nft_seen}"
    );
    assert!(!both, "both kube-proxy modes' rules were in place at once");
    assert!(doubled, "the second jump was never added");
    let r = report(&b.finish(Duration::from_mins(3)));
    for m in MODES {
        for w in WORKLOADS {
            let e = entry(&r, m, w);
            assert!(e["rate"].as_f64().unwrap_or(0.0) > 0.0, "{w} over {m}: {e}");
            assert_eq!(e["runtime"], "cri");
            if w != "stream" {
                assert!(
                    e["p50_us"].as_f64() > Some(0.0)
                        && e["p99_us"].as_f64() >= e["p50_us"].as_f64(),
                    "{e}"
                );
            }
        }
    }
    // The Service paths cross the runtime's bridge, with the pods named by CRI.
    let hops = entry(&r, "cri-iptables", "rr")["hops"].to_string();
    assert!(
        hops.contains(&format!("insp-bench/cli-{pid}/eth0(out)")),
        "{hops}"
    );
    assert!(
        hops.contains(&format!("insp-bench/srv-{pid}/eth0(in)")),
        "{hops}"
    );
    // Nothing stays: pods, rules.
    assert!(
        support::eventually(Duration::from_secs(20), || !lab
            .listed()
            .iter()
            .any(|(n, _)| n.starts_with("insp-bench/"))),
        "pods left: {:?}",
        lab.listed()
    );
    assert_eq!(leftovers(pid), Vec::<String>::new());
    support::assert_no_links_of_ours_since(&before, "bench --runtime cri");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_private_containerd_run_interrupted_leaves_nothing() {
    let _node = node();
    // The CNI bridge plugin turns ip_forward on: off before, it must be off again after.
    let was = std::fs::read_to_string(FORWARD).unwrap_or_default();
    std::fs::write(FORWARD, "0").expect("ip_forward");
    let b = Bench::start(&[
        "--runtime",
        "cri",
        "--private-containerd",
        "--workloads",
        "rr",
        "--run-secs",
        "1",
        "--repeat",
        "30",
    ]);
    let pid = b.pid();
    b.wait_said("over cri-");
    b.interrupt(&leftovers(pid));
    assert!(
        support::eventually(Duration::from_secs(20), || leftovers(pid).is_empty()),
        "{:?}",
        leftovers(pid)
    );
    let after = std::fs::read_to_string(FORWARD).unwrap_or_default();
    std::fs::write(FORWARD, &was).expect("ip_forward");
    assert_eq!(after.trim(), "0", "ip_forward was left on");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cri_bad_input_is_one_line_and_creates_nothing() {
    let _node = node();
    for (args, want) in [
        (
            &["--runtime", "cri", "--modes", "host"][..],
            "unknown CRI mode 'host'",
        ),
        (
            &[
                "--runtime",
                "cri",
                "--cri-socket",
                "/run/insp-no-such-cri.sock",
            ][..],
            "no CRI runtime answers on /run/insp-no-such-cri.sock",
        ),
        (
            &["--private-containerd"][..],
            "--private-containerd is for --runtime cri",
        ),
    ] {
        let b = Bench::start(args);
        let pid = b.pid();
        let out = b.finish(Duration::from_mins(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(leftovers(pid), Vec::<String>::new());
    }
}
