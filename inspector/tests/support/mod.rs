//! Helpers for the privileged end-to-end tests: namespaces and links made with iproute2 (an
//! implementation independent of the inspector's own netlink code), kernel interface counters
//! read with `ip -s -j link` (the oracle), and the inspector binary run as a user would.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod bench;
pub mod cri;
pub mod docker;
pub mod kube;
pub mod pcap;
pub mod prom;
pub mod schema;
pub mod totals;
pub mod usage;

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// A unique short prefix for this test process (interface names are limited to 15 bytes).
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}{n}", std::process::id() % 10000)
}

/// Runs a command and panics with its stderr if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip netns exec NS ...`.
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// A named namespace (`ip netns add`), deleted on drop, even when the test panics. IPv6 is
/// switched off before any link exists, so no router or neighbour solicitations appear.
pub struct Netns {
    pub name: String,
    /// Made here (and so deleted on drop), or only named.
    owned: bool,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        sh(&["ip", "netns", "add", name]);
        let ns = Self {
            name: name.to_owned(),
            owned: true,
        };
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, args: &[&str]) -> String {
        in_ns(&self.name, args)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).expect("netns path").ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `Udp: NoPorts` from /proc/net/snmp inside a namespace.
pub fn udp_noports(ns: &Netns) -> u64 {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (
        udp.next().expect("Udp header"),
        udp.next().expect("Udp values"),
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .expect("NoPorts column");
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// A bridge `br0` with address `cidr`, up, in `ns`. Without multicast snooping the bridge
/// does not join 224.0.0.106 and so sends no IGMP reports of its own at random moments: the
/// only traffic is the test's.
pub fn bridge_in(ns: &Netns, cidr: &str) {
    ns.exec(&[
        "ip",
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
    ns.exec(&["ip", "addr", "add", cidr, "dev", "br0"]);
    ns.exec(&["ip", "link", "set", "br0", "up"]);
}

/// Three workload namespaces (a, b, c) on a bridge that lives in a fourth ("br"), all
/// addresses in 198.18.0.0/24: br0 .1, a .2, b .3, c .4.
pub struct BridgeLab {
    pub br: Netns,
    pub a: Netns,
    pub b: Netns,
    pub c: Netns,
    pub prefix: String,
}

impl BridgeLab {
    pub fn new(tag: &str) -> Self {
        let prefix = unique(tag);
        let br = Netns::new(&format!("{prefix}br"));
        let a = Netns::new(&format!("{prefix}a"));
        let b = Netns::new(&format!("{prefix}b"));
        let c = Netns::new(&format!("{prefix}c"));
        bridge_in(&br, "198.18.0.1/24");
        for (i, ns) in [&a, &b, &c].into_iter().enumerate() {
            let host = format!("v{}", ["a", "b", "c"][i]);
            br.exec(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns",
                &ns.name,
            ]);
            br.exec(&["ip", "link", "set", &host, "master", "br0", "up"]);
            ns.exec(&[
                "ip",
                "addr",
                "add",
                &format!("198.18.0.{}/24", i + 2),
                "dev",
                "eth0",
            ]);
            ns.exec(&["ip", "link", "set", "eth0", "up"]);
            ns.exec(&["ip", "route", "add", "default", "via", "198.18.0.1"]);
        }
        Self {
            br,
            a,
            b,
            c,
            prefix,
        }
    }

    pub fn all(&self) -> [&Netns; 4] {
        [&self.br, &self.a, &self.b, &self.c]
    }
}

/// Kernel counters of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Every interface's counters in a namespace, by name, from `ip -s -j link show`.
pub fn counters(ns: &Netns) -> HashMap<String, Counters> {
    let out = ns.exec(&["ip", "-s", "-j", "link", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let mut m = HashMap::new();
    for l in v.as_array().expect("array") {
        let name = l["ifname"].as_str().unwrap_or_default().to_owned();
        let s = &l["stats64"];
        m.insert(
            name,
            Counters {
                rx_packets: s["rx"]["packets"].as_u64().unwrap_or(0),
                rx_bytes: s["rx"]["bytes"].as_u64().unwrap_or(0),
                tx_packets: s["tx"]["packets"].as_u64().unwrap_or(0),
                tx_bytes: s["tx"]["bytes"].as_u64().unwrap_or(0),
            },
        );
    }
    m
}

/// Every interface's counters in the namespace called `name`.
pub fn counters_in(name: &str) -> HashMap<String, Counters> {
    counters(&Netns {
        name: name.to_owned(),
        owned: false,
    })
}

/// Waits (bounded) until the counters of all namespaces stop changing for `quiet`.
pub fn wait_quiet(nss: &[&Netns], quiet: Duration) -> Vec<HashMap<String, Counters>> {
    let names: Vec<&str> = nss.iter().map(|n| n.name.as_str()).collect();
    wait_quiet_in(&names, quiet)
}

/// [`wait_quiet`] for namespaces by name (a lab's, say).
pub fn wait_quiet_in(nss: &[&str], quiet: Duration) -> Vec<HashMap<String, Counters>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last: Vec<_> = nss.iter().map(|n| counters_in(n)).collect();
    loop {
        std::thread::sleep(quiet);
        let now: Vec<_> = nss.iter().map(|n| counters_in(n)).collect();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "interfaces never went quiet");
        last = now;
    }
}

/// The inspector binary, started with `--ready-file`; killed on drop. Its stderr is read
/// line by line as it runs, so tests can wait for "attached ..." messages.
pub struct Inspector {
    child: Option<Child>,
    ready: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    /// Its stdout, line by line, as it comes (read on a thread of its own: an undrained
    /// pipe fills up (64 KiB) and the inspector then blocks on its next write - no more
    /// rescans - as any blocked consumer would make it).
    stdout: Arc<Mutex<Vec<String>>>,
    stdout_thread: Option<std::thread::JoinHandle<()>>,
}

/// Reads `pipe` line by line into `sink` until it closes.
fn stream(
    pipe: impl std::io::Read + Send + 'static,
    sink: &Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    let sink = Arc::clone(sink);
    std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push(l);
        }
    })
}

/// The binary under test: the one cargo built, or `INSPECTOR_BIN` (the kernel matrix runs
/// these tests against the release binary, inside a VM too).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("INSPECTOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_inspector").into())
    })
}

/// The release build, as shipped, for measuring its resources: `INSPECTOR_BIN` when set,
/// else built here when not yet (cargo's lock is free while tests run).
pub fn release_bin() -> PathBuf {
    if let Ok(b) = std::env::var("INSPECTOR_BIN") {
        return b.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-q", "-p", "inspector"])
        .status()
        .expect("cargo");
    assert!(st.success(), "building the release binary failed");
    root.join("target/release/inspector")
}

impl Inspector {
    /// Starts `inspector ARGS --ready-file F` and waits (bounded) until F exists.
    pub fn start(args: &[&str]) -> Self {
        Self::start_bin(Path::new(bin()), args)
    }

    /// [`Inspector::start`] of another build of it.
    pub fn start_bin(bin: &Path, args: &[&str]) -> Self {
        Self::start_env(bin, args, &[])
    }

    /// [`Inspector::start_bin`] with these environment variables set.
    pub fn start_env(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let ready = std::env::temp_dir().join(format!("{}.ready", unique("insp")));
        let _ = std::fs::remove_file(&ready);
        let mut child = Command::new(bin)
            .envs(envs.iter().copied())
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn inspector");
        let (stderr, stdout) = (Arc::default(), Arc::default());
        let stderr_thread = stream(child.stderr.take().expect("stderr"), &stderr);
        let stdout_thread = stream(child.stdout.take().expect("stdout"), &stdout);
        let mut me = Self {
            child: Some(child),
            ready,
            stderr,
            stderr_thread: Some(stderr_thread),
            stdout,
            stdout_thread: Some(stdout_thread),
        };
        let deadline = Instant::now() + Duration::from_mins(1);
        while !me.ready.exists() {
            if let Some(status) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                if let Some(t) = me.stderr_thread.take() {
                    let _ = t.join();
                }
                panic!(
                    "inspector exited before ready ({status}): {}",
                    me.stderr_text()
                );
            }
            assert!(Instant::now() < deadline, "inspector not ready after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> bool {
        eventually(limit, || {
            self.stderr
                .lock()
                .expect("lock")
                .iter()
                .any(|l| l.contains(needle))
        })
    }

    /// Waits (bounded) until the JSON records printed so far satisfy `done` (each line is
    /// checked against its schema as it is parsed). Returns whether they did.
    pub fn wait_json(
        &self,
        limit: Duration,
        mut done: impl FnMut(&[serde_json::Value]) -> bool,
    ) -> bool {
        eventually(limit, || {
            let text = self.stdout.lock().expect("lock").join("\n");
            done(&json_lines_all(text.as_bytes()))
        })
    }

    /// Sends `sig` and collects the output (bounded wait).
    pub fn signal(self, sig: i32) -> Output {
        let id = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(id as i32, sig) };
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits for it to exit by itself (killed, and so failed, after `limit`).
    pub fn wait_exit(mut self, limit: Duration) -> Output {
        let child = self.child.take().expect("running");
        let mut out = wait_bounded(child, limit);
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        out.stdout = self.stdout.lock().expect("lock").join("\n").into_bytes();
        out.stderr = self.stderr_text().into_bytes();
        out
    }

    /// SIGINT, as a user pressing Ctrl-C.
    pub fn interrupt(self) -> Output {
        self.signal(libc::SIGINT)
    }

    /// [`Inspector::interrupt`], and it must have exited 0 (its stderr shown otherwise).
    pub fn interrupt_ok(self) -> Output {
        let out = self.interrupt();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Inspector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.ready);
    }
}

/// Waits for a child with a timeout (killing it then) and returns its output.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Runs the inspector to completion (bounded) and returns its output.
pub fn run_inspector(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let child = Command::new(bin())
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inspector");
    wait_bounded(child, Duration::from_mins(1))
}

/// Parses JSON lines, keeping objects of the given "type". Every line must be one JSON
/// object matching the published schema of its own type (docs/schema/).
pub fn json_lines(out: &[u8], kind: &str) -> Vec<serde_json::Value> {
    json_lines_all(out)
        .into_iter()
        .filter(|v| v["type"] == kind)
        .collect()
}

/// Every JSON line of `out`, each checked against its schema.
pub fn json_lines_all(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a line of -o json output is not JSON ({e}): {l}"));
            schema::check(&v);
            v
        })
        .collect()
}

/// The workload at end `end` (`src_endpoint` or `dst_endpoint`) of a record is `name`
/// (id `id`, kind, runtime, network mode as given).
pub fn check_end(rec: &serde_json::Value, end: &str, want: [&str; 5]) {
    let e = &rec[end];
    let field = |k: &str| e[k].as_str().unwrap_or("<none>").to_owned();
    let got = ["name", "id", "kind", "runtime", "network_mode"].map(field);
    assert_eq!(got, want.map(String::from), "{end} of {rec}");
}

/// Programs, links and maps the kernel holds now, by id (from bpftool, an independent view).
#[derive(Debug, Default, Clone)]
pub struct BpfObjects {
    pub progs: HashMap<u64, String>,
    pub links: HashMap<u64, u64>,
    pub maps: HashMap<u64, String>,
}

pub fn bpf_objects() -> BpfObjects {
    let parse = |what: &str| -> Vec<serde_json::Value> {
        // An object freed while bpftool walks the ids (another test's inspector ending) fails
        // the walk: it is tried again.
        let mut tries = 0;
        let out = loop {
            let o = Command::new("bpftool")
                .args(["-j", what, "show"])
                .output()
                .expect("bpftool");
            tries += 1;
            if o.status.success() || tries == 5 {
                assert!(
                    o.status.success(),
                    "bpftool -j {what} show failed 5 times: {o:?}"
                );
                break String::from_utf8_lossy(&o.stdout).into_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let mut o = BpfObjects::default();
    for p in parse("prog") {
        o.progs.insert(
            p["id"].as_u64().unwrap_or(0),
            p["name"].as_str().unwrap_or_default().to_owned(),
        );
    }
    for l in parse("link") {
        o.links.insert(
            l["id"].as_u64().unwrap_or(0),
            l["prog_id"].as_u64().unwrap_or(0),
        );
    }
    for m in parse("map") {
        o.maps.insert(
            m["id"].as_u64().unwrap_or(0),
            m["name"].as_str().unwrap_or_default().to_owned(),
        );
    }
    o
}

/// Links of our programs (`insp_*`) the kernel holds now that were not in `before`.
pub fn links_of_ours_since(before: &BpfObjects) -> Vec<u64> {
    let after = bpf_objects();
    after
        .links
        .iter()
        .filter(|(k, prog)| {
            !before.links.contains_key(k)
                && after
                    .progs
                    .get(prog)
                    .is_some_and(|n| n.starts_with("insp_"))
        })
        .map(|(k, _)| *k)
        .collect()
}

/// None of [`links_of_ours_since`] stays (within 30 s: a process's links go as it exits).
pub fn assert_no_links_of_ours_since(before: &BpfObjects, what: &str) {
    assert!(
        eventually(Duration::from_secs(30), || links_of_ours_since(before)
            .is_empty()),
        "{what}: links were left attached: {:?}",
        links_of_ours_since(before)
    );
}

/// Ids of the maps a program uses (`bpftool prog show id N` lists them).
pub fn prog_map_ids(id: u64) -> Vec<u64> {
    let out = sh(&["bpftool", "-j", "prog", "show", "id", &id.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["map_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

/// A count a run can be sized by: environment variable `name` as a number, else `default`.
pub fn env_count<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `cond` until true or the limit passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Ids of the BPF programs, maps and links a process holds, from /proc/PID/fdinfo: the
/// kernel's own account, independent of anything the inspector prints.
#[derive(Debug, Default)]
pub struct HeldObjects {
    pub progs: Vec<u64>,
    pub maps: Vec<u64>,
    pub links: Vec<u64>,
}

pub fn held_objects(pid: i32) -> HeldObjects {
    let mut h = HeldObjects::default();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return h;
    };
    for e in rd.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(id) = field("link_id:") {
            h.links.push(id);
        } else if let Some(id) = field("prog_id:") {
            h.progs.push(id);
        } else if let Some(id) = field("map_id:") {
            h.maps.push(id);
        }
    }
    h
}

/// `netns_name/ifname/<field>` of each entry of a JSON line's `hops` (field: "direction",
/// "hook", ...).
pub fn hop_names(p: &serde_json::Value, field: &str) -> Vec<String> {
    p["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| {
            format!(
                "{}/{}/{}",
                h["netns_name"].as_str().unwrap_or(""),
                h["ifname"].as_str().unwrap_or(""),
                h[field].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// `inspector lab down --name LAB` on drop, even when the test panics.
pub struct LabGuard(pub String);
impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .args(["lab", "down", "--name", &self.0])
            .output();
    }
}

/// Sends raw Ethernet frames out of `ifname` from inside `ns` (`AF_PACKET`).
pub fn inject(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = ifname.to_owned();
    inspector::sys::netns::run_in(&ns.path(), move || {
        // SAFETY: plain socket calls on a descriptor we own and close.
        unsafe {
            let fd: std::os::fd::RawFd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let name = std::ffi::CString::new(ifname).unwrap();
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            sll.sll_halen = 6;
            for f in &frames {
                let n = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&raw const sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(
                    n,
                    f.len() as isize,
                    "send: {}",
                    std::io::Error::last_os_error()
                );
            }
            libc::close(fd);
        }
    })
    .expect("enter namespace");
}

/// A broadcast Ethernet frame of `ethertype` around `payload`.
pub fn frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 9];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Six broken IPv4 frames (198.18.0.1 -> 198.18.0.2): 3 headers cut after 10 bytes, 2 with
/// IHL 3 (impossible), 1 TCP segment cut after its ports (8080 -> 80). The parser calls 4
/// of them truncated and 2 malformed.
pub fn bad_frames() -> Vec<Vec<u8>> {
    let mut frames = vec![frame(0x0800, &[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6]); 3];
    let mut bad_ihl = vec![
        0x43, 0, 0, 40, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    bad_ihl.extend([0u8; 20]);
    frames.extend(std::iter::repeat_n(frame(0x0800, &bad_ihl), 2));
    let mut cut_tcp = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    cut_tcp.extend([0x1f, 0x90, 0x00, 0x50, 0, 0]);
    frames.push(frame(0x0800, &cut_tcp));
    frames
}

/// Where `cargo xtask setup` installs kubernetes-validate (a venv, with `PyYAML`).
pub const KUBE_VALIDATE_VENV: &str = "/var/cache/inspector/kubernetes-validate";

/// The YAML documents of a file as JSON (`PyYAML` from that venv).
pub fn load_yaml(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(Path::new(KUBE_VALIDATE_VENV).join("bin/python"))
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("the kubernetes-validate venv (run `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `deploy/` of this checkout.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A plain HTTP/1.0 GET on loopback `port`: (status, body); None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let (head, body) = r.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_owned(),
    ))
}

/// Someone else's tc setup on `dev` in `ns`: a classic-BPF filter (returns 0: no match,
/// the packet goes on) with handle 7 at `prio` on `hook` (the `clsact` qdisc must exist).
pub fn foreign_bpf_filter(ns: &Netns, dev: &str, hook: &str, prio: &str) {
    ns.exec(&[
        "tc",
        "filter",
        "add",
        "dev",
        dev,
        hook,
        "prio",
        prio,
        "handle",
        "7",
        "protocol",
        "all",
        "bpf",
        "bytecode",
        "1,6 0 0 0,",
    ]);
}

/// A bridge lab whose `a` sends through a tbf qdisc at 8 Mbit/s (1 MB/s: a 1000-byte frame
/// takes 1 ms), with the neighbour already resolved.
pub fn tbf_lab(tag: &str) -> BridgeLab {
    let lab = BridgeLab::new(tag);
    in_ns(&lab.a.name, &["ping", "-c", "1", "-W", "2", "198.18.0.3"]);
    lab.a.exec(&[
        "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "8mbit", "burst", "1600",
        "latency", "2s",
    ]);
    lab
}

/// `n` datagrams at once from `a` to b:`port`: 958 B payload + 8 UDP + 20 IP + 14 Ethernet
/// = 1000 B frames, each payload distinct (it is part of a UDP packet's fingerprint).
pub fn udp_frames(lab: &BridgeLab, n: u16, port: u16) {
    inspector::sys::netns::run_in(&lab.a.path(), move || {
        let s = std::net::UdpSocket::bind("198.18.0.2:0").unwrap();
        for i in 0..n {
            let mut payload = [i as u8; 958];
            payload[..2].copy_from_slice(&i.to_be_bytes());
            s.send_to(&payload, format!("198.18.0.3:{port}")).unwrap();
        }
    })
    .unwrap();
}

/// `trace --hops -o json` on the lab's a, bridge and b namespaces, with `extra` filters.
pub fn hops_tracer(lab: &BridgeLab, extra: &[&str]) -> Inspector {
    let mut args = vec![
        "trace",
        "--hops",
        "-o",
        "json",
        "-q",
        "--netns",
        &lab.a.name,
        "--netns",
        &lab.br.name,
        "--netns",
        &lab.b.name,
    ];
    args.extend_from_slice(extra);
    Inspector::start(&args)
}
