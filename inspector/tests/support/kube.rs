//! Kubernetes-node labs for the Service tests (iptables, nftables and IPVS modes): the
//! embedded spec renamed, servers that count accepts, bounded client connections, and
//! conntrack (the CLI) and iproute2 as oracles.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::sh;

/// The embedded Kubernetes-node spec, renamed, in `mode`, on subnets of its own (pods on
/// 198.18.NET/24, outside on NET+1, `ClusterIPs` on NET+2), pods named web1..web3.
pub fn spec(name: &str, mode: &str, net: u8) -> String {
    inspector::lab::spec::KUBE_SPEC
        .replace("name = \"insp-kube\"", &format!("name = \"{name}\""))
        .replace(
            "kube_proxy = \"iptables\"",
            &format!("kube_proxy = \"{mode}\""),
        )
        .replace("198.18.30.", &format!("198.18.{net}."))
        .replace("198.18.31.", &format!("198.18.{}.", net + 1))
        .replace("198.18.32.", &format!("198.18.{}.", net + 2))
        .replace("web-0", "web1")
        .replace("web-1", "web2")
        .replace("web-2", "web3")
}

/// Runs `f` on a thread inside the named network namespace.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
}

/// A TCP server on :8080 in a namespace that counts accepts; stops on drop (bounded).
pub struct Server {
    stop: Arc<AtomicBool>,
    accepts: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepts = Arc::new(AtomicU64::new(0));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&accepts));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = in_netns(ns, move || {
            let l = TcpListener::bind("0.0.0.0:8080").expect("bind 8080");
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_mins(2);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match l.accept() {
                    Ok((mut c, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(b"x");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("server up");
        Self {
            stop,
            accepts,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> u64 {
        self.accepts.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` bounded connections from `ns` to `dst` (each reads the server's byte); returns how
/// many succeeded.
pub fn connect_n(ns: &str, dst: &str, n: usize) -> usize {
    let dst: SocketAddr = dst.parse().unwrap();
    in_netns(ns, move || {
        (0..n)
            .filter(|_| {
                TcpStream::connect_timeout(&dst, Duration::from_secs(2)).is_ok_and(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).is_ok()
                })
            })
            .count()
    })
    .join()
    .unwrap()
}

/// Per backend (reply source "ip:port"), conntrack's connections to `vip:port`, read with
/// the conntrack CLI in the node namespace.
pub fn conntrack_split(node: &str, vip: &str, port: u16) -> BTreeMap<String, u64> {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        node,
        "conntrack",
        "-L",
        "-p",
        "tcp",
        "-d",
        vip,
        "--dport",
        &port.to_string(),
    ]);
    let mut m = BTreeMap::new();
    for l in out.lines() {
        // ... src=C dst=VIP sport=S dport=80 src=BACKEND dst=C sport=8080 dport=S ...
        let f: Vec<&str> = l.split_whitespace().collect();
        let srcs: Vec<&str> = f.iter().filter_map(|x| x.strip_prefix("src=")).collect();
        let sports: Vec<&str> = f.iter().filter_map(|x| x.strip_prefix("sport=")).collect();
        if srcs.len() >= 2 && sports.len() >= 2 {
            *m.entry(format!("{}:{}", srcs[1], sports[1])).or_default() += 1;
        }
    }
    m
}

pub fn ifname_of(ns: &str, ifindex: u64) -> String {
    let links: Value = serde_json::from_str(&sh(&["ip", "-n", ns, "-j", "link"])).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifindex"].as_u64() == Some(ifindex))
        .and_then(|l| l["ifname"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The node-side veth of a workload's eth0, as iproute2 reports the peer.
pub fn node_veth(lab: &str, w: &str) -> String {
    let l: Value = serde_json::from_str(&sh(&[
        "ip",
        "-n",
        &format!("{lab}-{w}"),
        "-j",
        "link",
        "show",
        "eth0",
    ]))
    .unwrap();
    ifname_of(&format!("{lab}-node"), l[0]["link_index"].as_u64().unwrap())
}

/// The three backends' servers.
pub fn start_servers(lab: &str) -> Vec<Server> {
    ["web1", "web2", "web3"]
        .iter()
        .map(|w| Server::start(&format!("{lab}-{w}")))
        .collect()
}

/// `inspector lab up` of the Kubernetes-node spec as `lab` in kube-proxy `mode` on subnet
/// `net` (see `spec`); the guard takes the lab down, also on panic.
pub fn lab_up(lab: &str, mode: &str, net: u8) -> super::LabGuard {
    let spec_file = std::env::temp_dir().join(format!("{lab}.toml"));
    std::fs::write(&spec_file, spec(lab, mode, net)).unwrap();
    let up = super::run_inspector(&["lab", "up", "--spec", spec_file.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&spec_file);
    let guard = super::LabGuard(lab.to_owned());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    guard
}

/// Per Service name, per backend endpoint: the connections the inspector attributed, counted
/// at the client's eth0 (egress flows with a backend). `each` sees every such flow.
pub fn client_backends(
    flows: &[Value],
    client: &str,
    mut each: impl FnMut(&Value),
) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for fl in flows {
        if fl["netns_name"] != client || fl["direction"] != "egress" {
            continue;
        }
        let (Some(b), Some(s)) = (
            fl["backend"]["endpoint"].as_str(),
            fl["service"]["name"].as_str(),
        ) else {
            continue;
        };
        each(fl);
        *m.entry(s.into()).or_default().entry(b.into()).or_default() += 1;
    }
    m
}

/// `inspector path LAB/client shop/web -o json`: its `probe` record (the run must succeed).
pub fn probe_web(lab: &str) -> Value {
    let out = super::run_inspector(
        &["-o", "json", "path", &format!("{lab}/client"), "shop/web"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    super::json_lines(&out.stdout, "probe").remove(0)
}

/// What [`service_traffic`] saw: the flow records, and each server's accepts before the
/// sticky connections and after all of them.
pub struct ServiceTraffic {
    pub flows: Vec<Value>,
    pub before_sticky: Vec<u64>,
    pub accepts: Vec<u64>,
}

/// The Service tests' traffic under `inspector flows -o json` on the lab's client, outside
/// and node namespaces: 300 connections to the `ClusterIP` (`.10`), 20 to the sticky one
/// (`.11`), 1 to the `NodePort` from outside; the records once the kernel's counters are
/// quiet (SIGINT prints the final snapshot).
pub fn service_traffic(lab: &str, net: u8, servers: &[Server], quiet: Duration) -> ServiceTraffic {
    let (client, ext, node) = (
        format!("{lab}-client"),
        format!("{lab}-ext"),
        format!("{lab}-node"),
    );
    let vip = |last: u8| format!("198.18.{}.{last}:80", net + 2);
    let insp = super::Inspector::start(&[
        "flows",
        "-o",
        "json",
        "-q",
        "--duration",
        "120",
        "--netns",
        &client,
        "--netns",
        &ext,
        "--netns",
        &node,
    ]);
    assert_eq!(connect_n(&client, &vip(10), 300), 300);
    let before_sticky: Vec<u64> = servers.iter().map(Server::count).collect();
    assert_eq!(connect_n(&client, &vip(11), 20), 20);
    assert_eq!(
        connect_n(&ext, &format!("198.18.{}.1:30080", net + 1), 1),
        1
    );
    let accepts: Vec<u64> = servers.iter().map(Server::count).collect();
    super::wait_quiet_in(&[&client, &node, &ext], quiet);
    let out = insp.interrupt();
    ServiceTraffic {
        flows: super::json_lines(&out.stdout, "flow"),
        before_sticky,
        accepts,
    }
}
