//! Workload selectors on real runtimes: `--container`, `-l`, `--from-container` with real
//! dockerd containers, and `--pod`, `-l` with `--namespace`, `--from-pod`/`--to-pod` with
//! real CRI pods, one of them created after the trace began. The oracle: an unfiltered
//! trace of the same window, cut by what `docker inspect` and CRI's status say (the
//! workload's namespace inode and address); each selected trace must hold exactly those
//! packets, and the kernel must have sent no other (`events_sent`).
mod support;

use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _, sync::Mutex, time::Duration};

use serde_json::Value;
use support::{
    Inspector,
    cri::CriLab,
    docker::{Dockerd, SOCKET},
    json_lines, unique,
};

/// The runtimes take turns (each test starts daemons of its own).
static RUNTIMES: Mutex<()> = Mutex::new(());

/// A packet as the comparison sees it: where, which way, addresses, ICMP type.
type Seen = (u64, String, String, String, String, u64);

fn seen(p: &Value) -> Seen {
    (
        p["netns"].as_u64().unwrap_or(0),
        p["ifname"].as_str().unwrap_or("").to_owned(),
        p["direction"].as_str().unwrap_or("").to_owned(),
        p["src"].as_str().unwrap_or("").to_owned(),
        p["dst"].as_str().unwrap_or("").to_owned(),
        p["icmp_type"].as_u64().unwrap_or(999),
    )
}

/// The packets of a run as a multiset, and its `events_sent`.
fn run_of(out: &std::process::Output) -> (BTreeMap<Seen, usize>, u64, usize) {
    let pkts = json_lines(&out.stdout, "packet");
    let mut m = BTreeMap::new();
    for p in &pkts {
        *m.entry(seen(p)).or_insert(0) += 1;
    }
    let stats = json_lines(&out.stdout, "stats");
    let sent = stats
        .last()
        .and_then(|s| s["events_sent"].as_u64())
        .expect("stats record");
    (m, sent, pkts.len())
}

/// The packets of `all` that `want` keeps.
fn cut(all: &BTreeMap<Seen, usize>, want: impl Fn(&Seen) -> bool) -> BTreeMap<Seen, usize> {
    all.iter()
        .filter(|(k, _)| want(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Starts `trace -o json ARGS icmp` on the default (global) hooks.
fn trace(args: &[&str]) -> Inspector {
    let mut v = vec!["-o", "json", "trace", "--no-services", "--no-drops"];
    v.extend_from_slice(args);
    v.push("icmp");
    Inspector::start(&v)
}

/// The selected run holds exactly `want`. The kernel sent no other event (`exact`), or
/// (while a new pod's namespace waited for its owner, when the kernel passes what may be
/// the new pod's and userspace decides) fewer than it sent to the unfiltered run.
fn check(
    name: &str,
    got: &std::process::Output,
    want: &BTreeMap<Seen, usize>,
    exact: bool,
    all_sent: u64,
) {
    let (m, sent, n) = run_of(got);
    assert!(!want.is_empty(), "{name}: the oracle holds no packet");
    assert_eq!(
        &m,
        want,
        "{name}: selected packets differ from the oracle's cut; its stderr: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    if exact {
        assert_eq!(
            sent as usize, n,
            "{name}: the kernel sent events the selection drops"
        );
    } else {
        assert!(
            sent < all_sent,
            "{name}: the kernel sent {sent} events, as many as unfiltered ({all_sent})"
        );
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn docker_selectors_select_exactly_their_containers_traffic() {
    let _turn = RUNTIMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut docker = Dockerd::start();
    let tag = unique("s");
    let [a, b, c] = ["a", "b", "c"].map(|n| format!("{tag}-{n}"));
    docker.run(&a, &["--label", &format!("sel.{tag}=web")], &[]);
    docker.run(&b, &["--label", &format!("sel.{tag}=other")], &[]);
    docker.run(&c, &[], &[]);
    let ip = |n: &str| {
        Dockerd::inspect(
            n,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    };
    let ns = |n: &str| {
        let pid = Dockerd::inspect(n, "{{.State.Pid}}");
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .expect("container netns")
            .ino()
    };
    let (a_ip, b_ip, c_ip, a_ns) = (ip(&a), ip(&b), ip(&c), ns(&a));
    // ARP settled first: the window holds the pings only.
    for n in [&a, &b] {
        assert!(Dockerd::exec(n, &format!("ping -c 1 -W 2 {c_ip}")));
    }
    let sock = ["--docker-socket", SOCKET];
    let all = trace(&sock);
    let by_name = trace(&[&sock[..], &["--container", &a]].concat());
    let by_label = trace(&[&sock[..], &["-l", &format!("sel.{tag}=web")]].concat());
    let from = trace(&[&sock[..], &["--from-container", &a]].concat());
    for n in [&a, &b] {
        assert!(Dockerd::exec(n, &format!("ping -c 3 -i 0.2 -W 2 {c_ip}")));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (all, by_name, by_label, from) = (
        all.interrupt_ok(),
        by_name.interrupt_ok(),
        by_label.interrupt_ok(),
        from.interrupt_ok(),
    );
    let (every, all_sent, _) = run_of(&all);
    // The test can fail: b's pings are in the unfiltered run.
    assert!(every.keys().any(|k| k.3 == b_ip), "{every:#?}");
    let mine = cut(&every, |k| k.0 == a_ns || k.3 == a_ip || k.4 == a_ip);
    // 3 requests leave a's eth0, 3 replies come back to it.
    let at_eth0 = |ty: u64, dir: &str| {
        mine.iter()
            .filter(|(k, _)| k.0 == a_ns && k.1 == "eth0" && k.2 == dir && k.5 == ty)
            .map(|(_, v)| v)
            .sum::<usize>()
    };
    assert_eq!(
        (at_eth0(8, "egress"), at_eth0(0, "ingress")),
        (3, 3),
        "{mine:#?}"
    );
    check("--container", &by_name, &mine, true, all_sent);
    check("-l", &by_label, &mine, true, all_sent);
    check(
        "--from-container",
        &from,
        &cut(&every, |k| k.3 == a_ip),
        true,
        all_sent,
    );
    for n in [&a, &b, &c] {
        Dockerd::remove(n);
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cri_selectors_follow_pods_including_one_started_later() {
    let _turn = RUNTIMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tag = unique("q");
    let mut lab = CriLab::start(&tag);
    let sock = lab.socket.display().to_string();
    let web = lab.pod("demo", "web-0", &format!("uid-web-{tag}"));
    let client = lab.pod("demo", "client-0", &format!("uid-client-{tag}"));
    // Same labels as demo/web-0 (app=web-0), another Kubernetes namespace.
    let twin = lab.pod("other", "web-0", &format!("uid-twin-{tag}"));
    lab.container(&web, "idle", &["/bin/sleep", "3600"]);
    let shell = lab.container(&client, "shell", &["/bin/sleep", "3600"]);
    let twin_sh = lab.container(&twin, "shell", &["/bin/sleep", "3600"]);
    let status = |lab: &CriLab, p| {
        let (ip, path) = lab.status(p);
        (ip, std::fs::metadata(path).expect("pod netns").ino())
    };
    let ((web_ip, web_ns), (cli_ip, cli_ns), (twin_ip, _)) = (
        status(&lab, &web),
        status(&lab, &client),
        status(&lab, &twin),
    );
    for (c, to) in [(&shell, &web_ip), (&twin_sh, &cli_ip)] {
        assert_eq!(lab.exec(c, &["ping", "-c", "1", "-W", "2", to], 10).0, 0);
    }
    let s = ["--cri-socket", sock.as_str()];
    let all = trace(&s);
    let late = trace(&[&s[..], &["--pod", "demo/late-0"]].concat());
    let labeled = trace(&[&s[..], &["-l", "app=web-0", "--namespace", "demo"]].concat());
    let one_way = trace(
        &[
            &s[..],
            &["--from-pod", "demo/client-0", "--to-pod", "demo/web-0"],
        ]
        .concat(),
    );
    // The agent: selected on its command line, and per query in its API.
    let port = support::prom::free_port();
    let listen = format!("127.0.0.1:{port}");
    let agent = Inspector::start(&[
        "agent",
        "-q",
        "--no-latency",
        "--interval",
        "0.5",
        "--listen",
        &listen,
        "--pod",
        "demo/client-0",
        "--cri-socket",
        &sock,
    ]);
    // A pod created now, whose only container pings web-0 three times as it starts.
    let late_pod = lab.pod("demo", "late-0", &format!("uid-late-{tag}"));
    lab.container(
        &late_pod,
        "pinger",
        &["/bin/ping", "-c", "3", "-i", "0.2", "-W", "2", &web_ip],
    );
    let (late_ip, late_ns) = status(&lab, &late_pod);
    for (c, to) in [(&shell, &web_ip), (&twin_sh, &cli_ip)] {
        assert_eq!(
            lab.exec(c, &["ping", "-c", "2", "-i", "0.2", "-W", "2", to], 10)
                .0,
            0
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let api = |q: &str| -> Vec<Value> {
        let (code, body) = support::http_get(port, &format!("/api/flows{q}")).expect("api");
        assert_eq!(code, 200, "{q}: {body}");
        json_lines(body.as_bytes(), "flow")
    };
    let key = |f: &Value| {
        (
            f["netns"].as_u64().unwrap_or(0),
            f["src"].as_str().unwrap_or("").to_owned(),
            f["dst"].as_str().unwrap_or("").to_owned(),
        )
    };
    let flows = api("");
    assert!(!flows.is_empty());
    // The command line's --pod: every flow is client-0's, and its pings to web-0 are there.
    for f in &flows {
        let (ns, src, dst) = key(f);
        assert!(ns == cli_ns || src == cli_ip || dst == cli_ip, "{f}");
    }
    assert!(flows.iter().any(|f| key(f).2 == web_ip), "{flows:#?}");
    // Per query: a selector, and an expression, each equal to the oracle's cut.
    let picked_flows = api("?to_pod=demo/web-0");
    let picked: Vec<_> = picked_flows.iter().map(key).collect();
    let mut want: Vec<_> = flows.iter().map(key).filter(|k| k.2 == web_ip).collect();
    want.sort();
    let mut got = picked;
    got.sort();
    assert!(!want.is_empty());
    let brief = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|f| {
                format!(
                    "{} {}/{} {} {}:{} > {}:{} n={} first={}",
                    f["netns"],
                    f["netns_name"],
                    f["ifname"],
                    f["direction"],
                    f["src"],
                    f["sport"],
                    f["dst"],
                    f["dport"],
                    f["packets"],
                    f["first_ns"]
                )
            })
            .collect()
    };
    assert_eq!(
        got,
        want,
        "?to_pod=demo/web-0 (web {web_ip} ns {web_ns}, client {cli_ip} ns {cli_ns}, late \
         {late_ip}); all: {:#?} picked: {:#?}",
        brief(&flows),
        brief(&picked_flows)
    );
    let expr = format!("icmp[icmptype] == icmp-echoreply and src host {web_ip}");
    let got = api(&format!("?expr={}", expr.replace(' ', "%20")));
    assert!(
        !got.is_empty(),
        "{expr}: nothing; all: {:#?}",
        brief(&flows)
    );
    let replies = flows
        .iter()
        .filter(|f| {
            f["proto"] == "icmp" && f["icmp_type"].as_u64() == Some(0) && key(f).1 == web_ip
        })
        .count();
    assert_eq!(got.len(), replies, "{got:#?}");
    let bad = support::http_get(port, "/api/flows?expr=tcp%20port").unwrap();
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert_eq!(bad.1.trim().lines().count(), 1, "{}", bad.1);
    drop(agent);
    // `path` from and to pods named as the selectors name them: web-0 has no listener on
    // port 80, so its kernel refuses; the probe starts in client-0's namespace.
    let out = support::run_inspector(
        &[
            "path",
            "-o",
            "json",
            "--cri-socket",
            &sock,
            "--from-pod",
            "demo/client-0",
            "--to-pod",
            "demo/web-0",
            "--port",
            "80",
            "--timeout",
            "2",
        ],
        &[],
    );
    let probe = json_lines(&out.stdout, "probe");
    let probe = probe
        .first()
        .unwrap_or_else(|| panic!("no probe record: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        (
            probe["source"].as_str(),
            probe["src"].as_str(),
            probe["dst"].as_str(),
            probe["dport"].as_u64(),
            probe["verdict"].as_str(),
        ),
        (
            Some("demo/client-0"),
            Some(cli_ip.as_str()),
            Some(web_ip.as_str()),
            Some(80),
            Some("refused")
        ),
        "{probe}"
    );
    let outs = [all, late, labeled, one_way].map(Inspector::interrupt_ok);
    let (every, all_sent, _) = run_of(&outs[0]);
    assert!(every.keys().any(|k| k.3 == twin_ip), "{every:#?}");
    let late_cut = cut(&every, |k| {
        k.0 == late_ns || k.3 == late_ip || k.4 == late_ip
    });
    let first = late_cut
        .iter()
        .filter(|(k, _)| k.0 == late_ns && k.1 == "eth0" && k.2 == "egress" && k.5 == 8)
        .map(|(_, v)| v)
        .sum::<usize>();
    assert_eq!(
        first, 3,
        "every echo request of the late pod, the first included: {late_cut:#?}"
    );
    check(
        "--pod (created later)",
        &outs[1],
        &late_cut,
        false,
        all_sent,
    );
    let web_cut = cut(&every, |k| k.0 == web_ns || k.3 == web_ip || k.4 == web_ip);
    check("-l --namespace", &outs[2], &web_cut, false, all_sent);
    check(
        "--from-pod --to-pod",
        &outs[3],
        &cut(&every, |k| k.3 == cli_ip && k.4 == web_ip),
        false,
        all_sent,
    );
}
