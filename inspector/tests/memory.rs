//! Bounded memory: with 100,000 flows, `flows -o json` (printing them included) and the
//! agent (counting them, and answering `/api/flows` with all of them) stay under 64 MiB
//! resident at their peak, as the kernel accounts it: `wait4`'s `ru_maxrss` for `flows`,
//! `VmHWM` for the live agent. The records are checked against what was sent: exactly one
//! per UDP 5-tuple, at the sender's interface. And when the flow table is full, what it
//! evicts is counted: every 5-tuple sent is either printed or counted evicted.
//!
//! Measured on the release build, as shipped (`INSPECTOR_BIN` when set, as the kernel matrix
//! sets it): the debug build's own code adds about 14 MiB of resident pages.
mod support;

use std::{
    io::{Read as _, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support::{BridgeLab, json_lines};

/// Flows sent (distinct UDP 5-tuples from a to b).
const FLOWS: u32 = 100_000;
/// The bound, KiB.
const LIMIT_KIB: u64 = 64 * 1024;

/// `n` datagrams from a (198.18.0.2) to b (198.18.0.3), each of its own 5-tuple: two
/// source sockets, `n / 2` destination ports each.
fn send_flows(lab: &BridgeLab, n: u32) {
    inspector::sys::netns::run_in(&lab.a.path(), move || {
        for _ in 0..2 {
            let sock = std::net::UdpSocket::bind("198.18.0.2:0").unwrap();
            for p in 0..n / 2 {
                let port = u16::try_from(10_000 + p).unwrap();
                sock.send_to(b"m", ("198.18.0.3", port)).unwrap();
            }
        }
    })
    .unwrap();
}

/// Starts the release build with `args` and a ready file, stdout to `out`, and waits until
/// it is ready.
fn start(args: &[&str], out: Stdio) -> Child {
    let ready = std::env::temp_dir().join(format!("{}.ready", support::unique("mem")));
    let mut child = Command::new(support::release_bin())
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn inspector");
    let deadline = Instant::now() + Duration::from_mins(1);
    while !ready.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the inspector exited before it was ready"
        );
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&ready);
    child
}

/// `flows -o json -q --netns A` and `extra`, its records written to a temporary file (the
/// child, and the file's path).
fn flows_to_file(lab: &BridgeLab, extra: &[&str]) -> (Child, PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.json", support::unique("mem")));
    let out = std::fs::File::create(&path).unwrap();
    let mut args = vec!["flows", "-o", "json", "-q", "--netns", lab.a.name.as_str()];
    args.extend_from_slice(extra);
    (start(&args, out.into()), path)
}

/// `VmHWM` of a live process, KiB.
fn peak_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The UDP flow records at a's eth0, egress.
fn sent_records(recs: &[serde_json::Value]) -> usize {
    recs.iter()
        .filter(|f| f["ifname"] == "eth0" && f["direction"] == "egress" && f["proto"] == "udp")
        .count()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn flows_prints_100k_flows_in_bounded_memory() {
    let lab = BridgeLab::new("mem");
    let (child, out_path) = flows_to_file(
        &lab,
        &[
            "--proto",
            "udp",
            "--duration",
            "12",
            "--max-flows",
            "262144",
        ],
    );
    let pid = i32::try_from(child.id()).unwrap();
    let t0 = Instant::now();
    send_flows(&lab, FLOWS);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "sending took {:?}: the run would end first",
        t0.elapsed()
    );
    // The kernel's account of the child's peak, taken as it is reaped.
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child; status and usage are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(reaped, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    drop(child);
    let text = std::fs::read(&out_path).unwrap();
    let _ = std::fs::remove_file(&out_path);
    let recs = json_lines(&text, "flow");
    let peak = u64::try_from(usage.ru_maxrss).unwrap();
    eprintln!(
        "memory: flows printed {} records ({} MB of JSON), peak RSS {} KiB",
        recs.len(),
        text.len() / 1_000_000,
        peak
    );
    assert_eq!(sent_records(&recs), FLOWS as usize);
    assert!(peak < LIMIT_KIB, "peak RSS {peak} KiB");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_agent_counts_and_serves_100k_flows_in_bounded_memory() {
    let lab = BridgeLab::new("mema");
    let port = support::prom::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = start(
        &[
            "agent",
            "-q",
            "--no-latency",
            "--listen",
            &listen,
            "--interval",
            "1",
            "--netns",
            &lab.a.name,
            "--proto",
            "udp",
            "--max-flows",
            "262144",
        ],
        Stdio::null(),
    );
    let pid = i32::try_from(agent.id()).unwrap();
    send_flows(&lab, FLOWS);
    // Counted: a round saw them all.
    let counted = support::eventually(Duration::from_secs(30), || {
        support::http_get(port, "/metrics").is_some_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with("inspector_flow_records{")
                    && l.split_whitespace().last() == Some(&FLOWS.to_string())
            })
        })
    });
    assert!(counted, "the agent never counted {FLOWS} flow records");
    let counting = peak_kib(pid);
    let (code, body) = support::http_get(port, "/api/flows").expect("/api/flows");
    assert_eq!(code, 200);
    let recs = json_lines(body.as_bytes(), "flow");
    let serving = peak_kib(pid);
    eprintln!(
        "memory: agent peak RSS {counting} KiB counting {FLOWS} flows, {serving} KiB after \
         serving {} records ({} MB)",
        recs.len(),
        body.len() / 1_000_000
    );
    assert_eq!(sent_records(&recs), FLOWS as usize);
    // A client that asks for all of them and reads nothing is cut off after its stall (its
    // chunked body never gets the last chunk), and the agent's rounds go on.
    let mut stuck = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck
        .write_all(b"GET /api/flows HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let rounds = || -> u64 {
        support::http_get(port, "/metrics")
            .and_then(|(_, m)| {
                m.lines()
                    .find(|l| l.starts_with("inspector_rounds_total"))
                    .and_then(|l| l.split_whitespace().last()?.parse().ok())
            })
            .unwrap_or(0)
    };
    let before = rounds();
    assert!(
        support::eventually(Duration::from_secs(10), || rounds() > before + 1),
        "the agent's rounds stopped after a stuck client"
    );
    stuck
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cut = Vec::new();
    let _ = stuck.read_to_end(&mut cut);
    assert!(
        cut.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &cut[..cut.len().min(200)]
    );
    assert!(
        cut.len() < 41_000_000 && !cut.ends_with(b"\r\n0\r\n\r\n"),
        "a stuck client's answer ended complete ({} bytes)",
        cut.len()
    );
    eprintln!(
        "memory: a stuck client was cut off after {} bytes",
        cut.len()
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let _ = agent.wait();
    assert!(serving < LIMIT_KIB, "peak RSS {serving} KiB");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_full_flow_table_counts_what_it_evicts() {
    const SENT: u32 = 6_000;
    let lab = BridgeLab::new("memev");
    // Only the test's datagrams cross a's eth0: no ARP (a static neighbour), no IPv6, and b
    // drops them without an ICMP answer. Every flow record there is then one of them.
    let b_mac = lab.b.exec(&["cat", "/sys/class/net/eth0/address"]);
    lab.a.exec(&[
        "ip",
        "neigh",
        "replace",
        "198.18.0.3",
        "lladdr",
        b_mac.trim(),
        "nud",
        "permanent",
        "dev",
        "eth0",
    ]);
    lab.a
        .exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
    lab.b
        .exec(&["iptables", "-I", "INPUT", "-p", "udp", "-j", "DROP"]);
    let (mut child, out_path) = flows_to_file(
        &lab,
        &["--no-drops", "--duration", "5", "--max-flows", "1024"],
    );
    send_flows(&lab, SENT);
    assert!(child.wait().unwrap().success());
    let text = std::fs::read(&out_path).unwrap();
    let _ = std::fs::remove_file(&out_path);
    let recs = json_lines(&text, "flow");
    let printed = sent_records(&recs);
    assert_eq!(printed, recs.len(), "only the test's datagrams: {recs:#?}");
    let stats = json_lines(&text, "stats");
    let evicted = stats[0]["flows_evicted"].as_u64().unwrap();
    eprintln!(
        "memory: {SENT} flows into a table of 1,024: {printed} printed, {evicted} counted evicted"
    );
    assert!(evicted > 0 && printed < SENT as usize, "{}", stats[0]);
    assert_eq!(printed as u64 + evicted, u64::from(SENT), "{}", stats[0]);
}
