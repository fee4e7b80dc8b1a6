//! The four-mode lab: `lab up` then `lab down` leaves links, namespaces, rules, cgroups and
//! records exactly as before; a bad spec changes nothing and names its problem; and every
//! flow between the lab's workloads (bridge, container, host, none, plus DNAT from outside)
//! is attributed to the workload the spec names.
mod support;

use std::{
    fmt::Write as _,
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use serde_json::Value;
use support::{Inspector, bin, json_lines, run_inspector, sh, unique};

/// The tests compare the whole node before and after: one at a time.
static NODE: Mutex<()> = Mutex::new(());

/// What the node looks like, as iproute2, iptables, nft and the filesystem say.
fn snapshot() -> Vec<(String, String)> {
    let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|p| std::path::Path::new(p).join("cgroup.procs").exists())
        .unwrap_or("/sys/fs/cgroup");
    let mut links: Vec<String> = serde_json::from_str::<Value>(&sh(&["ip", "-j", "link"]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} {}", l["ifindex"], l["ifname"]))
        .collect();
    links.sort();
    let ls = |dir: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.join(" ")
    };
    let mut out = vec![
        ("links".into(), links.join(", ")),
        ("netns".into(), ls("/var/run/netns")),
        ("cgroups".into(), ls(v2)),
        ("labs".into(), ls("/run/inspector/labs")),
        ("nft".into(), sh(&["nft", "list", "ruleset"])),
        (
            "ip_forward".into(),
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        ),
    ];
    for t in ["filter", "nat", "raw", "mangle"] {
        out.push((format!("iptables -t {t}"), sh(&["iptables", "-t", t, "-S"])));
    }
    out
}

fn assert_same(before: &[(String, String)], after: &[(String, String)], what: &str) {
    for ((k, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(a, b, "{what}: {k} changed");
    }
}

fn spec(name: &str, net: u8) -> String {
    // The embedded four-mode spec, renamed and moved to subnets of its own.
    inspector::lab::spec::DEFAULT_SPEC
        .replace("name = \"insp-lab\"", &format!("name = \"{name}\""))
        .replace("198.18.20.", &format!("198.18.{net}."))
        .replace("198.18.21.", &format!("198.18.{}.", net + 1))
}

fn write_spec(text: &str) -> tempfile_path::Path {
    tempfile_path::Path::new(text)
}

/// A spec file removed on drop.
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn new(text: &str) -> Self {
            let p = std::env::temp_dir().join(format!("{}.toml", super::unique("spec")));
            std::fs::write(&p, text).unwrap();
            Self(p)
        }
        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A server started with `lab run`, killed on drop.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(lab: &str, w: &str, addr: &str, www: &str) -> Server {
    Server(
        Command::new(bin())
            .args([
                "lab",
                "run",
                lab,
                w,
                "--",
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                addr,
                "-h",
                www,
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("lab run"),
    )
}

fn fetch(lab: &str, w: &str, url: &str) -> bool {
    Command::new(bin())
        .args([
            "lab",
            "run",
            lab,
            w,
            "--",
            "/bin/busybox",
            "timeout",
            "5",
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            url,
        ])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn lab_up_down_restores_the_node_and_bad_specs_change_nothing() {
    let _g = NODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = snapshot();
    let name = unique("u");
    let f = write_spec(&spec(&name, 50));
    let up = run_inspector(&["lab", "up", "--spec", f.as_str()], &[]);
    let guard = support::LabGuard(name.clone());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let during = snapshot();
    assert_ne!(during[1], before[1], "lab up made no namespaces");
    let st = run_inspector(&["-o", "json", "lab", "status"], &[]);
    assert!(String::from_utf8_lossy(&st.stdout).contains(&format!("\"lab\":\"{name}\"")));
    let down = run_inspector(&["lab", "down", "--name", &name], &[]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    drop(guard);
    assert_same(&before, &snapshot(), "after lab down");

    // Each bad spec: one line naming the problem, exit code 1, nothing changed.
    for (text, want) in [
        (
            spec(&name, 50).replace("198.18.50.0/24", "198.18.50.0/99"),
            "prefix length",
        ),
        (
            spec(&name, 50).replace("198.18.50.0/24", "203.0.113.0/24"),
            "outside 198.18.0.0/15",
        ),
        (
            spec(&name, 50).replace("name = \"client\"", "name = \"web\""),
            "duplicate workload name 'web'",
        ),
        (
            spec(&name, 50).replace("mode = \"none\"", "mode = \"overlay\""),
            "unknown network mode 'overlay'",
        ),
        (
            spec(&name, 50).replace("container:web", "container:nobody"),
            "names no other workload",
        ),
        ("name = \"x\"\nsubnet = ".into(), "lab spec"),
    ] {
        let f = write_spec(&text);
        let out = run_inspector(&["lab", "up", "--spec", f.as_str()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{want}: {err}");
        assert!(err.contains(want), "expected '{want}' in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("inspector: error: "), "{err}");
        assert_same(&before, &snapshot(), want);
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn lab_four_modes_every_flow_end_is_the_right_workload() {
    let _g = NODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lab = unique("m");
    let f = write_spec(&spec(&lab, 60));
    let up = run_inspector(&["lab", "up", "--spec", f.as_str()], &[]);
    let _guard = support::LabGuard(lab.clone());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let www = std::env::temp_dir().join(unique("www"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "lab\n").unwrap();
    let www = www.to_str().unwrap().to_owned();
    let _servers = [
        serve(&lab, "web", "80", &www),
        serve(&lab, "sidecar", "81", &www),
        serve(&lab, "batch", "127.0.0.1:80", &www),
    ];
    let insp = Inspector::start(&[
        "-o",
        "json",
        "flows",
        "--lo",
        "-q",
        "--netns",
        &format!("{lab}-node"),
        "--netns",
        &format!("{lab}-web"),
        "--netns",
        &format!("{lab}-client"),
        "--netns",
        &format!("{lab}-batch"),
        "--netns",
        &format!("{lab}-ext"),
    ]);
    let web = "198.18.60.2";
    check_socket_owner_cgroups(&lab);
    // The servers may take a moment to listen: the first fetch retries (bounded).
    assert!(
        support::eventually(std::time::Duration::from_secs(10), || fetch(
            &lab,
            "client",
            &format!("http://{web}/")
        )),
        "client -> web"
    );
    assert!(
        fetch(&lab, "client", &format!("http://{web}:81/")),
        "client -> sidecar"
    );
    assert!(
        fetch(&lab, "agent", &format!("http://{web}/")),
        "agent (host mode) -> web"
    );
    assert!(fetch(&lab, "batch", "http://127.0.0.1/"), "batch over lo");
    let ext = sh(&[
        "ip",
        "netns",
        "exec",
        &format!("{lab}-ext"),
        "/bin/busybox",
        "wget",
        "-q",
        "-O-",
        "http://198.18.61.1:8080/",
    ]);
    assert_eq!(ext.trim(), "lab", "outside -> published port (DNAT)");
    // Out of the node (masqueraded); nothing listens there, so it is refused - bounded.
    assert!(
        !fetch(&lab, "web", "http://198.18.61.2:9/"),
        "web -> outside is refused"
    );
    let explained = run_inspector(&["-o", "json", "explain", &format!("{lab}/web")], &[]);
    assert!(
        explained.status.success(),
        "{}",
        String::from_utf8_lossy(&explained.stderr)
    );
    let out = insp.interrupt_ok();
    let _ = std::fs::remove_dir_all(&www);

    let flows = json_lines(&out.stdout, "flow");
    let who = |ip: &str, port: Option<u64>| -> Option<(&'static str, &'static str)> {
        match (ip, port) {
            ("198.18.60.2", Some(80)) => Some(("web", "bridge")),
            ("198.18.60.2", Some(81)) => Some(("sidecar", "container:web")),
            ("198.18.60.3", _) => Some(("client", "bridge")),
            ("198.18.60.1", Some(_)) => Some(("agent", "host")),
            _ => None,
        }
    };
    let mut seen = std::collections::BTreeMap::new();
    for f in flows.iter().filter(|f| f["proto"] == "tcp") {
        let netns_name = f["netns_name"].as_str().unwrap();
        for (end, ip, port) in [
            ("src_endpoint", "src", "sport"),
            ("dst_endpoint", "dst", "dport"),
        ] {
            let addr = f[ip].as_str().unwrap();
            let hit = if addr == "127.0.0.1" && netns_name == format!("{lab}-batch") {
                Some(("batch", "none"))
            } else if addr == "198.18.61.2" {
                // The outside client is nobody's: null, not a guess.
                assert!(f[end].is_null(), "{end} of {f}");
                None
            } else {
                who(addr, f[port].as_u64())
            };
            if let Some((name, mode)) = hit {
                support::check_end(f, end, [name, &format!("{lab}/{name}"), "lab", "lab", mode]);
                *seen.entry(name).or_insert(0) += 1;
            }
        }
    }
    for name in ["web", "sidecar", "client", "agent", "batch"] {
        assert!(
            seen.get(name).copied().unwrap_or(0) >= 2,
            "no attributed flows of {name}: {seen:?}"
        );
    }
    check_explained(&json_lines(&explained.stdout, "explain")[0], &flows, &lab);
    // DNAT: the outside client's connection reached web:80 through the bridge.
    assert!(
        flows.iter().any(|f| f["src"] == "198.18.61.2"
            && f["dst"] == web
            && f["dport"] == 80
            && f["dst_endpoint"]["name"] == "web"),
        "no DNATed flow to web: {flows:#?}"
    );
}

/// Every hop `explain web` predicts is a hook where the inspector saw that path's packets:
/// web -> client replies on the bridge, web -> outside (masqueraded on the last hop), and
/// outside -> web:80 through the published port (rewritten by DNAT before the bridge).
fn check_explained(ex: &Value, flows: &[Value], lab: &str) {
    let paths = ex["paths"].as_array().expect("paths");
    let names: Vec<&str> = paths.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "to another workload on the bridge",
            "out of the node",
            "into a published port"
        ],
        "{ex}"
    );
    let saw = |ns: &str, ifname: &str, dir: &str, ok: &dyn Fn(&Value) -> bool| {
        flows.iter().any(|f| {
            f["netns_name"] == ns && f["ifname"] == ifname && f["direction"] == dir && ok(f)
        })
    };
    for p in paths {
        let hops = p["hops"].as_array().unwrap();
        let last = hops.len() - 1;
        for (i, h) in hops.iter().enumerate() {
            let (ns, ifn, dir) = (
                h["netns_name"].as_str().unwrap(),
                h["ifname"].as_str().unwrap(),
                h["direction"].as_str().unwrap(),
            );
            let ok: Box<dyn Fn(&Value) -> bool> = match p["name"].as_str().unwrap() {
                "to another workload on the bridge" => {
                    Box::new(|f: &Value| f["src"] == "198.18.60.2" && f["dst"] == "198.18.60.3")
                }
                "out of the node" if i == last => {
                    // Masqueraded: the node's outside address, not web's.
                    Box::new(|f: &Value| {
                        f["src"] == "198.18.61.1" && f["dst"] == "198.18.61.2" && f["dport"] == 9
                    })
                }
                "out of the node" => Box::new(|f: &Value| {
                    f["src"] == "198.18.60.2" && f["dst"] == "198.18.61.2" && f["dport"] == 9
                }),
                _ if i == 0 => {
                    // Before DNAT: addressed to the node's published port.
                    Box::new(|f: &Value| {
                        f["src"] == "198.18.61.2" && f["dst"] == "198.18.61.1" && f["dport"] == 8080
                    })
                }
                _ => Box::new(|f: &Value| {
                    f["src"] == "198.18.61.2" && f["dst"] == "198.18.60.2" && f["dport"] == 80
                }),
            };
            assert!(
                saw(ns, ifn, dir, &*ok),
                "{} hop {} ({ns}/{ifn} {dir}) not observed (lab {lab})",
                p["name"],
                i + 1
            );
        }
        let rules = p["rules"].as_array().unwrap();
        match p["name"].as_str().unwrap() {
            "out of the node" => assert!(
                rules
                    .iter()
                    .any(|r| r.as_str().unwrap().contains("MASQUERADE")),
                "{p}"
            ),
            "into a published port" => assert!(
                rules.iter().any(|r| r
                    .as_str()
                    .unwrap()
                    .contains("--dport 8080 -j DNAT --to-destination 198.18.60.2:80")),
                "{p}"
            ),
            _ => {}
        }
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn fast_attach_attaches_everything_and_restores_rcu_expedited() {
    let _g = NODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lab = unique("f");
    let mut text = format!("name = \"{lab}\"\nsubnet = \"198.18.70.0/24\"\n");
    for i in 0..12 {
        let _ = writeln!(text, "[[workload]]\nname = \"w{i}\"\nmode = \"bridge\"");
    }
    let f = write_spec(&text);
    let up = run_inspector(&["lab", "up", "--spec", f.as_str()], &[]);
    let _guard = support::LabGuard(lab.clone());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let before = std::fs::read_to_string("/sys/kernel/rcu_expedited").unwrap();
    let mut args = vec![
        "-o".to_owned(),
        "json".into(),
        "flows".into(),
        "--fast-attach".into(),
    ];
    args.push("--netns".into());
    args.push(format!("{lab}-node"));
    for i in 0..12 {
        args.push("--netns".into());
        args.push(format!("{lab}-w{i}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let insp = Inspector::start(&argv);
    let during = std::fs::read_to_string("/sys/kernel/rcu_expedited").unwrap();
    let out = insp.interrupt();
    let after = std::fs::read_to_string("/sys/kernel/rcu_expedited").unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        during.trim(),
        before.trim(),
        "restored once the batch was attached"
    );
    assert_eq!(
        after.trim(),
        before.trim(),
        "restored after the detach at exit"
    );
    let stats = json_lines(&out.stdout, "stats");
    // 12 eth0, 12 host-side veths, the bridge.
    assert_eq!(stats[0]["attached_interfaces"], 25, "{stats:?}");
}

/// The socket-owner programs sit on exactly the cgroups whose sockets decide something:
/// web and sidecar (one namespace) and agent (host mode) - not client or batch, whose
/// namespace alone names them. bpftool is the oracle.
fn check_socket_owner_cgroups(lab: &str) {
    let rec: Value = serde_json::from_slice(
        &std::fs::read(format!("/run/inspector/labs/{lab}.json")).expect("lab record"),
    )
    .expect("record JSON");
    for w in rec["workloads"].as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        let dir = w["cgroup"].as_str().unwrap();
        let shown = sh(&["bpftool", "cgroup", "show", dir]);
        let has = shown.contains("insp_sock_owner_in") && shown.contains("insp_sock_owner_out");
        let want = matches!(name, "web" | "sidecar" | "agent");
        assert_eq!(has, want, "{name}: {shown}");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn trace_events_names_namespaces_coming_and_going() {
    let _g = NODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lab = unique("e");
    let f = write_spec(&format!(
        "name = \"{lab}\"\nsubnet = \"198.18.80.0/24\"\n[[workload]]\nname = \"solo\"\nmode = \"bridge\"\n"
    ));
    let insp = Inspector::start(&[
        "-o",
        "json",
        "trace",
        "--events",
        "-q",
        "--rescan-ms",
        "200",
        "--proto",
        "sctp",
    ]);
    let up = run_inspector(&["lab", "up", "--spec", f.as_str()], &[]);
    let guard = support::LabGuard(lab.clone());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let ns = format!("{lab}-solo");
    let seen = |evs: &[Value], action: &str| {
        let named = |object: &str, e: &Value| {
            e["type"] == "lifecycle"
                && e["object"] == object
                && e["action"] == action
                && e["netns_name"] == ns.as_str()
                && e["workload"]["name"] == "solo"
        };
        evs.iter().any(|e| named("netns", e))
            && evs
                .iter()
                .any(|e| named("link", e) && e["ifname"] == "eth0")
    };
    // Removed once its coming has been reported; its going is awaited too.
    let limit = std::time::Duration::from_secs(20);
    insp.wait_json(limit, |e| seen(e, "appeared"));
    drop(guard);
    insp.wait_json(limit, |e| seen(e, "disappeared"));
    let out = insp.interrupt_ok();
    let evs = json_lines(&out.stdout, "lifecycle");
    for action in ["appeared", "disappeared"] {
        assert!(
            evs.iter().any(|e| e["object"] == "netns"
                && e["action"] == action
                && e["netns_name"] == ns.as_str()
                && e["workload"]["name"] == "solo"
                && e["workload"]["id"] == format!("{lab}/solo").as_str()),
            "no netns {action} event for {ns}: {evs:#?}"
        );
        assert!(
            evs.iter().any(|e| e["object"] == "link"
                && e["action"] == action
                && e["netns_name"] == ns.as_str()
                && e["ifname"] == "eth0"
                && e["workload"]["name"] == "solo"),
            "no eth0 {action} event in {ns}: {evs:#?}"
        );
    }
}
