//! `deploy/`: every manifest passes `kubernetes-validate --strict` (Kubernetes' own schemas,
//! offline: there is no API server here), and the `DaemonSet` runs the agent as the binary
//! expects - its arguments parse, its probes are the agent's routes, its capabilities are
//! the ones the agent checks for plus the documented `SYS_PTRACE`, and every mount it
//! declares is one the agent reads.
use std::{path::Path, process::Command};

mod support;

use support::{KUBE_VALIDATE_VENV as VENV, deploy_dir, load_yaml as load};

fn manifests() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(deploy_dir())
        .expect("deploy/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_manifest_passes_kubernetes_validate() {
    let files = manifests();
    assert!(files.len() >= 3, "{files:?}");
    let out = Command::new(Path::new(VENV).join("bin/kubernetes-validate"))
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate (run `cargo xtask setup`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );
}

#[test]
fn the_daemonset_runs_the_agent_as_the_binary_expects() {
    let ds = load(&deploy_dir().join("daemonset.yaml")).remove(0);
    assert_eq!(ds["kind"], "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], true);
    let c = &pod["containers"][0];
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(NODE_NAME)", "node-1"))
        .collect();
    assert_eq!(args[0], "agent");
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .map(|i| &args[i + 1]);
    assert_eq!(listen.map(String::as_str), Some("0.0.0.0:9590"));
    assert_eq!(c["ports"][0]["containerPort"], 9590);
    // The arguments parse: with `--help` last, the binary parses (and refuses) every flag
    // before it, then prints help instead of running.
    let out = Command::new(env!("CARGO_BIN_EXE_inspector"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut caps: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    caps.sort_unstable();
    // What `probe::preflight::privileges` checks, plus SYS_PTRACE (other users' /proc/PID).
    assert_eq!(
        caps,
        ["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"]
    );
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for want in [
        "/sys/fs/bpf",
        "/sys/kernel/tracing",
        "/sys/fs/cgroup",
        "/run/netns",
        "/var/run/docker/netns",
        "/run/containerd/containerd.sock",
        "/run/inspector",
    ] {
        assert!(mounts.contains(&want), "{want} not mounted: {mounts:?}");
    }
}
