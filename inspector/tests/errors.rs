//! Bad input and missing prerequisites: one clear line on stderr naming the cause and what to
//! do, a non-zero exit, and nothing loaded or attached.
mod support;

use std::os::unix::process::CommandExt as _;

use support::{Netns, bpf_objects, run_inspector, unique};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the inspector, expects failure with `needle` in its first stderr line, and (as root)
/// checks with bpftool that no inspector link was attached meanwhile.
fn fails_with(args: &[&str], envs: &[(&str, &str)], needle: &str) -> String {
    let root = is_root();
    let before = if root {
        bpf_objects()
    } else {
        support::BpfObjects::default()
    };
    let out = run_inspector(args, envs);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail; stderr: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("inspector: error: "),
        "{args:?}: unexpected first line: {err}"
    );
    assert!(
        first.contains(needle),
        "{args:?}: expected '{needle}' in: {first}"
    );
    if !root {
        return err;
    }
    nothing_of_ours_stays(&before, &format!("{args:?}"));
    err
}

/// Links of ours made since `before`: none may stay. Another test of this file may be running
/// an inspector meanwhile (its links go when it ends, a leak would not).
fn nothing_of_ours_stays(before: &support::BpfObjects, what: &str) {
    support::assert_no_links_of_ours_since(before, what);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn unknown_interface_is_named() {
    fails_with(
        &["flows", "--duration", "1", "-i", "nosuch0"],
        &[],
        "unknown interface 'nosuch0'",
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn unknown_netns_is_named() {
    fails_with(
        &["trace", "--duration", "1", "--netns", "no-such-ns"],
        &[],
        "unknown network namespace 'no-such-ns'",
    );
    fails_with(
        &["topology", "--netns", "123"],
        &[],
        "unknown network namespace '123'",
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn interface_must_exist_in_the_selected_namespace() {
    let ns = Netns::new(&unique("er"));
    // eth0 exists on the host, but not in this empty namespace.
    fails_with(
        &[
            "flows",
            "--duration",
            "1",
            "--netns",
            &ns.name,
            "-i",
            "eth0",
        ],
        &[],
        "unknown interface 'eth0'",
    );
}

#[test]
fn bad_filters_are_rejected_before_anything_happens() {
    fails_with(
        &["trace", "--proto", "tcpp"],
        &[],
        "unknown protocol 'tcpp'",
    );
    fails_with(
        &["trace", "--host", "198.18.0.0/40"],
        &[],
        "bad address '198.18.0.0/40'",
    );
    fails_with(&["trace", "--port", "70000"], &[], "bad port '70000'");
    // pcap-filter expressions: libpcap's message and the column, on one line.
    let err = fails_with(
        &["trace", "tcp and and udp"],
        &[],
        "invalid filter expression at column 9 ('and'): can't parse filter expression: syntax error",
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    fails_with(
        &["flows", "tcp", "port", "99999"],
        &[],
        "invalid filter expression at column 10 ('99999'): illegal port number 99999 > 65535",
    );
    fails_with(
        &["agent", "(tcp or udp"],
        &[],
        "invalid filter expression at column 12 (at its end)",
    );
    // Workload selectors: checked before anything is attached.
    fails_with(
        &["trace", "--pod", "web"],
        &[],
        "bad pod 'web': use NAMESPACE/NAME",
    );
    fails_with(
        &["flows", "-l", "app"],
        &[],
        "bad label selector 'app': use key=value[,key=value...]",
    );
    fails_with(
        &["agent", "--to-container", "a b"],
        &[],
        "bad container 'a b'",
    );
    fails_with(
        &[
            "path",
            "--from-pod",
            "demo",
            "--to-pod",
            "demo/web-0",
            "--port",
            "80",
        ],
        &[],
        "bad pod 'demo': use NAMESPACE/NAME",
    );
    fails_with(
        &["path", "web", "198.18.0.1:80", "--port", "80"],
        &[],
        "--port goes with --to-pod or --to-container",
    );
    fails_with(
        &["trace", "--namespace", "Shop"],
        &[],
        "bad Kubernetes namespace 'Shop'",
    );
    fails_with(
        &["trace", "-w", "-", "-s", "20000"],
        &[],
        "'20000' is not a snap length from 1 to 16384",
    );
    fails_with(
        &["trace", "--pcap"],
        &[],
        "required arguments were not provided: --write <FILE>",
    );
    fails_with(
        &[
            "trace",
            "-w",
            "/nonexistent-dir/x.pcapng",
            "--duration",
            "1",
        ],
        &[],
        "cannot write /nonexistent-dir/x.pcapng",
    );
    fails_with(
        &["flows", "--duration=-3"],
        &[],
        "not a positive number of seconds",
    );
    fails_with(
        &["flows", "--no-such-flag"],
        &[],
        "unexpected argument '--no-such-flag'",
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn unprivileged_user_is_told_what_is_missing() {
    let before = bpf_objects();
    let out = std::process::Command::new(support::bin())
        .args(["flows", "--duration", "1"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.lines()
            .next()
            .unwrap_or_default()
            .contains("insufficient privileges"),
        "{err}"
    );
    assert!(
        err.contains("CAP_BPF") && err.contains("run as root"),
        "{err}"
    );
    nothing_of_ours_stays(&before, "flows as nobody");
}

/// The kernel here has BTF; the path is redirected to a missing file to exercise the message.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn fake_missing_btf_is_explained() {
    fails_with(
        &["flows", "--duration", "1"],
        &[("INSPECTOR_BTF_PATH", "/nonexistent/vmlinux")],
        "kernel has no BTF at /nonexistent/vmlinux",
    );
}

/// A fault-injection flag makes the program read past __`sk_buff`, so the real verifier rejects
/// it; the error must say so and carry the verifier's log.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn fault_injected_verifier_rejection_shows_the_log() {
    let err = fails_with(
        // The tc programs carry the fault (their context is `__sk_buff`).
        &[
            "flows",
            "--duration",
            "1",
            "--netns",
            "host",
            "--attach",
            "tcx",
        ],
        &[("INSPECTOR_FAULT", "verifier")],
        "verifier rejected program",
    );
    assert!(
        err.contains("invalid bpf_context access"),
        "verifier log missing: {err}"
    );
}

/// tracefs is mounted here (or mountable); the path is redirected to one that cannot be
/// mounted to exercise the message. With --no-drops the same run needs no tracefs.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn fake_missing_tracefs_is_explained() {
    let env = [("INSPECTOR_TRACEFS", "/nonexistent/tracing")];
    let err = fails_with(
        &["flows", "--duration", "1", "--netns", "host"],
        &env,
        "tracefs is not mounted at /nonexistent/tracing",
    );
    assert!(err.contains("--no-drops"), "{err}");
    let out = run_inspector(
        &[
            "flows",
            "--duration",
            "0.2",
            "--netns",
            "host",
            "--no-drops",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "--no-drops must not need tracefs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kernel without a hook (fault injected: `INSPECTOR_FAULT=no-hook:TP` makes every check
/// of tracepoint TP find it missing, on a kernel that has it): each gets the degradation
/// docs/robustness.md's table gives it, checked against the programs the process holds.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn fault_injected_kernel_without_a_hook_falls_back_or_says_so() {
    let ns = Netns::new(&unique("nh"));
    ns.exec(&[
        "ip", "link", "add", "nha", "type", "veth", "peer", "name", "nhb",
    ]);
    ns.exec(&["ip", "link", "set", "nha", "up"]);
    ns.exec(&["ip", "link", "set", "nhb", "up"]);
    let bin = std::path::Path::new(support::bin());
    let args = ["flows", "--netns", ns.name.as_str(), "--duration", "30"];
    // Programs of ours the running process holds, by name; and its links.
    let held = |envs: &[(&str, &str)]| -> (Vec<String>, usize, String) {
        let insp = support::Inspector::start_env(bin, &args, envs);
        let h = support::held_objects(insp.pid());
        let names = bpf_objects().progs;
        let mut progs: Vec<String> = h
            .progs
            .iter()
            .filter_map(|id| names.get(id).cloned())
            .collect();
        progs.sort();
        let out = insp.interrupt_ok();
        (
            progs,
            h.links.len(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // With the hooks (the control): the global hooks, no per-device link.
    let (progs, _, _) = held(&[]);
    assert!(
        progs.iter().any(|p| p == "insp_gl_xmit"),
        "flows uses the global hooks here: {progs:?}"
    );
    // Without net_dev_start_xmit: per device (TCX links on both veth ends), no global hook.
    let fault = [("INSPECTOR_FAULT", "no-hook:net_dev_start_xmit")];
    let (progs, links, err) = held(&fault);
    assert!(
        !progs.iter().any(|p| p.starts_with("insp_gl_")) && links >= 2,
        "no fallback to per-device hooks: {progs:?}, {links} links; {err}"
    );
    let status = run_inspector(&["status"], &fault);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("global-hooks") && l.contains(" no ")),
        "status must name the missing hook: {text}"
    );
    // Asked for by name: one line, nothing attached.
    fails_with(
        &["flows", "--duration", "1", "--attach", "global"],
        &fault,
        "--attach global needs the kernel's BTF for tp_btf programs (no tracepoint \
         net_dev_start_xmit: fault injected): use --attach tcx or tc",
    );
    // Without skb:kfree_skb: one line naming --no-drops, which then runs.
    let fault = [("INSPECTOR_FAULT", "no-hook:kfree_skb")];
    fails_with(
        &["flows", "--duration", "1", "--netns", &ns.name],
        &fault,
        "run with --no-drops",
    );
    let out = run_inspector(
        &[
            "flows",
            "--duration",
            "0.3",
            "--netns",
            &ns.name,
            "--no-drops",
        ],
        &fault,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a stack hook: trace --hops warns once what its hops lack, and runs.
    let out = run_inspector(
        &["trace", "--hops", "--duration", "0.3", "--netns", &ns.name],
        &[("INSPECTOR_FAULT", "no-hook:net_dev_queue")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("warning: tp_btf/net_dev_queue is not traced")
            .count(),
        1,
        "{err}"
    );
}
