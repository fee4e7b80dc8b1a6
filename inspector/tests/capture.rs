//! Capture files (`trace -w`): what the inspector writes is what tcpdump captures on the same
//! interface (the same frames, byte for byte: whole, up to 16384 bytes), and tshark reads it:
//! pcapng with an interface per (namespace, device) and a comment on every packet; classic
//! pcap to stdout (`-w - --pcap`), read by `tshark -r -`.
mod support;

use std::{
    collections::HashMap,
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use inspector_common::flow::SNAP_MAX;
use support::{
    BridgeLab, Inspector,
    pcap::{pcap_frames, pcapng_packets, stop, stop_tcpdump, tcpdump},
};

/// Bounded traffic from a: pings (small frames, and 1442-byte ones) and a TCP transfer
/// (frames above 128 bytes, segments the stack hands over in pages).
fn traffic(lab: &BridgeLab) {
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "4", "-i", "0.05", "-W", "2", "198.18.0.4"],
    );
    support::in_ns(
        &lab.a.name,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.05",
            "-s",
            "1400",
            "-W",
            "2",
            "198.18.0.4",
        ],
    );
    let got = inspector::traffic::tcp_transfer(
        &lab.c.path(),
        &lab.a.path(),
        "198.18.0.4:7201".parse().unwrap(),
        20_000,
    )
    .unwrap();
    assert_eq!(got, 20_000);
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn capture_file_holds_what_tcpdump_captures_and_tshark_reads_it() {
    let lab = BridgeLab::new("cw");
    let dir = std::env::temp_dir().join(support::unique("capture"));
    std::fs::create_dir_all(&dir).unwrap();
    let (ours, theirs) = (dir.join("ours.pcapng"), dir.join("tcpdump.pcap"));
    let ours_tcx = dir.join("ours-tcx.pcapng");
    let td = tcpdump(&lab.a.name, "eth0", &[], &theirs);
    let start = |file: &std::path::Path, attach: &[&str]| {
        let mut args = vec![
            "trace",
            "-w",
            file.to_str().unwrap(),
            "--netns",
            &lab.a.name,
            "--netns",
            &lab.c.name,
        ];
        args.extend_from_slice(attach);
        Inspector::start(&args)
    };
    let insp = start(&ours, &[]);
    let tcx = start(&ours_tcx, &["--attach", "tcx"]);
    traffic(&lab);
    let out = insp.interrupt_ok();
    let out_tcx = tcx.interrupt_ok();
    assert!(out_tcx.status.success());
    stop_tcpdump(td, &theirs);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "nothing on stdout with -w FILE");

    // Ours: interfaces by id, frames per interface, a comment and a direction on each.
    let packets = pcapng_packets(&std::fs::read(&ours).unwrap());
    let total = packets.len();
    let mut names: Vec<String> = packets.iter().map(|p| p.iface.clone()).collect();
    names.dedup();
    let mut frames: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for p in &packets {
        let comment = p.comment.as_ref().expect("a comment on every packet");
        assert!(
            comment.starts_with(&format!("hop {} ", p.iface)),
            "{comment}"
        );
        assert!(matches!(p.flags, Some(1 | 2)), "direction in epb_flags");
        assert!(p.frame.data.len() <= SNAP_MAX && p.frame.len as usize >= p.frame.data.len());
        frames
            .entry(p.iface.clone())
            .or_default()
            .push(p.frame.data.clone());
    }
    assert!(
        said.contains(&format!("{total} packets written")),
        "summary on stderr: {said}"
    );
    let eth0 = format!("{}/eth0", lab.a.name);
    assert!(names.contains(&eth0), "{names:?}");
    assert!(names.contains(&format!("{}/eth0", lab.c.name)), "{names:?}");

    // tcpdump's own capture of a's eth0 (both directions, whole frames): the same frames.
    // Only the IPv4 frames between a and c (the traffic above, inside every window) are
    // compared.
    // - TCX copies paged data too: each of ours is one of theirs, whole (up to SNAP_MAX).
    // - The global hooks copy the linear part: each of ours is the start of one of theirs,
    //   whole when the stack built it in one piece (the pings, 1442 bytes included).
    let ours_a: Vec<Vec<u8>> = frames.remove(&eth0).unwrap_or_default();
    let between = |f: &Vec<u8>| {
        f.len() >= 34
            && f[12..14] == [0x08, 0x00]
            && [&f[26..30], &f[30..34]].contains(&&[198u8, 18, 0, 2][..])
            && [&f[26..30], &f[30..34]].contains(&&[198u8, 18, 0, 4][..])
    };
    let theirs_ac: Vec<Vec<u8>> = pcap_frames(&std::fs::read(&theirs).unwrap())
        .into_iter()
        .map(|f| f.data)
        .filter(between)
        .collect();
    let icmp = |f: &Vec<u8>| f[23] == 1;
    assert_eq!(
        theirs_ac
            .iter()
            .filter(|f| icmp(f) && f.len() == 1442)
            .count(),
        4,
        "tcpdump saw the large pings whole"
    );
    let tcx_a: Vec<Vec<u8>> = pcapng_packets(&std::fs::read(&ours_tcx).unwrap())
        .into_iter()
        .filter(|p| p.iface == eth0)
        .map(|p| p.frame.data)
        .collect();
    for (who, ours_x, whole) in [("global", ours_a, false), ("tcx", tcx_a, true)] {
        let ours_ac: Vec<Vec<u8>> = sorted(ours_x.into_iter().filter(between).collect());
        assert!(
            ours_ac.len() >= 12 + 10,
            "{who}: too little traffic: {}",
            ours_ac.len()
        );
        assert_eq!(
            ours_ac.len(),
            theirs_ac.len(),
            "{who}: frames on {eth0}: ours vs tcpdump's"
        );
        let mut left = theirs_ac.clone();
        for f in &ours_ac {
            let i = left
                .iter()
                .position(|t| {
                    let cut = &t[..t.len().min(SNAP_MAX)];
                    if whole || icmp(t) {
                        cut == f.as_slice()
                    } else {
                        t.starts_with(f) && f.len() >= 54
                    }
                })
                .unwrap_or_else(|| {
                    panic!("{who}: a frame of ours is not in tcpdump's capture: {f:02x?}")
                });
            left.swap_remove(i);
        }
    }

    // tshark reads it all: the same count, every packet on a named interface with a comment.
    let fields = support::sh(&[
        "tshark",
        "-r",
        ours.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.comment",
    ]);
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), total, "tshark's packets: {fields}");
    for l in &lines {
        let (iface, comment) = l.split_once('\t').expect("two fields");
        assert!(comment.starts_with(&format!("hop {iface} ")), "{l}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-w - --pcap -s 60`: classic pcap on stdout, cut at 60 bytes, which `tshark -r -` reads.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn classic_pcap_to_stdout_reads_in_tshark() {
    let lab = BridgeLab::new("cp");
    // Not `Inspector::start`: its stdout is read as text lines, and this one is binary.
    let out_file = std::env::temp_dir().join(support::unique("stdout.pcap"));
    let ready = std::env::temp_dir().join(support::unique("ready"));
    let mut child = Command::new(support::bin())
        .args([
            "trace",
            "-w",
            "-",
            "--pcap",
            "-s",
            "60",
            "--netns",
            &lab.a.name,
            "--ready-file",
        ])
        .arg(&ready)
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("inspector");
    let deadline = Instant::now() + Duration::from_mins(1);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "inspector not ready");
        assert!(
            child.try_wait().unwrap().is_none(),
            "inspector exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "3", "-i", "0.05", "-W", "2", "198.18.0.4"],
    );
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    stop(child);
    let _ = std::fs::remove_file(&ready);
    let bytes = std::fs::read(&out_file).unwrap();
    let _ = std::fs::remove_file(&out_file);
    let frames = pcap_frames(&bytes);
    for f in &frames {
        // -s 60: at most 60 bytes kept, the whole length recorded (the pings' frames are 98).
        assert!(
            f.data.len() <= 60 && f.len as usize >= f.data.len(),
            "{f:?}"
        );
    }
    let n = frames.len();
    // 3 echo requests out and 3 replies in on a's eth0 (and ARP, if it was not cached).
    assert!(n >= 6, "{n} packets");
    let mut tshark = Command::new("tshark")
        .args(["-r", "-", "-T", "fields", "-e", "icmp.type"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark");
    tshark.stdin.take().unwrap().write_all(&bytes).unwrap();
    let o = tshark.wait_with_output().unwrap();
    let types = String::from_utf8_lossy(&o.stdout);
    assert_eq!(types.lines().filter(|l| *l == "8").count(), 3, "{types}");
    assert_eq!(types.lines().filter(|l| *l == "0").count(), 3, "{types}");
}

/// `trace -r FILE`: a capture read back, filtered by an expression as tcpdump filters the
/// same file, by `--netns` as tshark's interface names say, and written again with `-w`
/// (comments kept) for tshark.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn read_back_selects_as_tcpdump_does() {
    let lab = BridgeLab::new("cr");
    let dir = std::env::temp_dir().join(support::unique("readback"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ours.pcapng");
    let insp = Inspector::start(&[
        "trace",
        "-w",
        file.to_str().unwrap(),
        "--netns",
        &lab.a.name,
        "--netns",
        &lab.br.name,
    ]);
    traffic(&lab);
    insp.interrupt_ok();
    let f = file.to_str().unwrap();
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["trace", "-r", f, "-o", "json"];
        all.extend(args);
        let out = support::run_inspector(&all, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        support::json_lines(&out.stdout, "packet")
    };
    let total = json(&[]).len();
    assert!(total >= 30, "{total} packets");
    // From stdin, read as it streams: the same packets; something else is one line.
    let piped = Command::new(support::bin())
        .args(["trace", "-r", "-", "-o", "json"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(support::json_lines(&piped.stdout, "packet").len(), total);
    let not = Command::new(support::bin())
        .args(["trace", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"hello, not a capture")?;
            c.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&not.stderr);
    assert!(!not.status.success());
    assert!(
        err.trim().lines().count() == 1 && err.contains("not a pcap or pcapng capture file"),
        "{err}"
    );
    for expr in [
        "icmp",
        "tcp[tcpflags] & tcp-syn != 0",
        "tcp and len > 128",
        "not tcp",
    ] {
        let td = support::sh(&["tcpdump", "-r", f, "-n", expr]);
        assert_eq!(json(&[expr]).len(), td.lines().count(), "'{expr}'");
    }
    // --netns: the interfaces tshark names with that namespace.
    let names = support::sh(&[
        "tshark",
        "-r",
        f,
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
    ]);
    let in_a = names
        .lines()
        .filter(|l| l.starts_with(&format!("{}/", lab.a.name)))
        .count();
    let picked = json(&["--netns", &lab.a.name]);
    assert_eq!(picked.len(), in_a);
    assert!(
        picked
            .iter()
            .all(|p| p["netns_name"] == lab.a.name.as_str())
    );
    // -r with -w: the selection written again, each packet with its comment as it was.
    let again = dir.join("again.pcapng");
    let out = support::run_inspector(
        &["trace", "-r", f, "-w", again.to_str().unwrap(), "icmp"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = pcapng_packets(&std::fs::read(&file).unwrap());
    let after = pcapng_packets(&std::fs::read(&again).unwrap());
    let icmp_before: Vec<_> = before
        .iter()
        .filter(|p| {
            p.frame.data.len() > 23 && p.frame.data[12..14] == [8, 0] && p.frame.data[23] == 1
        })
        .map(|p| (p.iface.clone(), p.frame.clone(), p.comment.clone()))
        .collect();
    let icmp_after: Vec<_> = after
        .iter()
        .map(|p| (p.iface.clone(), p.frame.clone(), p.comment.clone()))
        .collect();
    assert_eq!(icmp_after, icmp_before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The files of a rotated capture in order: FILE, FILE1, FILE2, ...
fn series(first: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![first.to_path_buf()];
    for i in 1.. {
        let next = std::path::PathBuf::from(format!("{}{i}", first.display()));
        if !next.exists() {
            break;
        }
        v.push(next);
    }
    v
}

/// `-C 1`: a new file per million bytes. Every file opens in tshark, and the packets of all
/// of them on a's eth0 are what the kernel counted there, per direction. `-G 1` with
/// strftime fields: a file per second, named by its time.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn rotated_files_hold_every_packet_the_kernel_counted() {
    let lab = BridgeLab::new("cz");
    // No IPv6 of its own: only the test's packets, so the window's edges cannot cut any.
    lab.a
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    let dir = std::env::temp_dir().join(support::unique("rotate"));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("cap.pcapng");
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    let before = support::counters(&lab.a)["eth0"];
    let insp = Inspector::start(&[
        "trace",
        "-w",
        first.to_str().unwrap(),
        "-C",
        "1",
        "--netns",
        &lab.a.name,
        "-i",
        "eth0",
        "--no-drops",
    ]);
    let dst = std::net::SocketAddr::from(([198, 18, 0, 4], 7300));
    let sent = inspector::traffic::udp_burst(&lab.c.path(), &lab.a.path(), dst, 8000, 64).unwrap();
    assert_eq!(sent, 8000);
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    let out = insp.interrupt_ok();
    let after = support::counters(&lab.a)["eth0"];
    let files = series(&first);
    assert!(files.len() >= 2, "{files:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("({} files)", files.len())), "{said}");
    let (mut rx, mut tx) = (0, 0);
    for f in &files {
        let size = std::fs::metadata(f).unwrap().len();
        // A file is closed at the first packet past 1,000,000 bytes.
        assert!(
            f == files.last().unwrap() || size >= 1_000_000,
            "{f:?}: {size} bytes"
        );
        let fields = support::sh(&[
            "tshark",
            "-r",
            f.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
        ]);
        let packets = pcapng_packets(&std::fs::read(f).unwrap());
        assert_eq!(
            fields.lines().count(),
            packets.len(),
            "tshark reads all of {f:?}"
        );
        for p in &packets {
            match p.flags {
                Some(1) => rx += 1,
                Some(2) => tx += 1,
                other => panic!("direction {other:?}"),
            }
        }
    }
    assert_eq!(
        rx,
        after.rx_packets - before.rx_packets,
        "ingress vs rx_packets"
    );
    assert_eq!(
        tx,
        after.tx_packets - before.tx_packets,
        "egress vs tx_packets"
    );

    // -G 1: files named by the second they were opened in.
    let timed = dir.join("t-%H%M%S.pcapng");
    let insp = Inspector::start(&[
        "trace",
        "-w",
        timed.to_str().unwrap(),
        "-G",
        "1",
        "--netns",
        &lab.a.name,
        "--no-drops",
    ]);
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "8", "-i", "0.3", "-W", "2", "198.18.0.4"],
    );
    insp.interrupt_ok();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("t-"))
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    for n in &names {
        assert!(
            n.len() == "t-HHMMSS.pcapng".len() && n[2..8].bytes().all(|b| b.is_ascii_digit()),
            "{n}"
        );
        let path = dir.join(n);
        assert!(
            !pcapng_packets(&std::fs::read(&path).unwrap()).is_empty(),
            "{n}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pod's connection to a Service (kube-proxy's iptables rules on a lab node), captured at
/// every hop: tshark shows each packet's comment, and every hop of the connection names the
/// Service, the backend and the NAT, and the client pod at its end.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn tshark_shows_service_backend_and_nat_at_every_hop() {
    use support::kube::{connect_n, lab_up, start_servers};
    let lab = support::unique("cs");
    let net = 80;
    let _guard = lab_up(&lab, "iptables", net);
    let _servers = start_servers(&lab);
    let dir = std::env::temp_dir().join(support::unique("svccap"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("svc.pcapng");
    let ns = |w: &str| format!("{lab}-{w}");
    let mut args = vec![
        "trace".to_owned(),
        "-w".to_owned(),
        file.display().to_string(),
        "tcp port 80 or tcp port 8080".to_owned(),
    ];
    for w in ["client", "node", "web1", "web2", "web3"] {
        args.extend(["--netns".to_owned(), ns(w)]);
    }
    let insp = Inspector::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        connect_n(&ns("client"), &format!("198.18.{}.10:80", net + 2), 1),
        1
    );
    support::wait_quiet_in(&[&ns("client"), &ns("node")], Duration::from_millis(300));
    insp.interrupt_ok();
    let fields = support::sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "tcp.flags.syn",
        "-e",
        "frame.comment",
    ]);
    let lines: Vec<(&str, &str, &str)> = fields
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .collect();
    assert!(lines.len() >= 8, "{fields}");
    // Every packet of the connection, at every hop: the Service, its backend, the NAT.
    let backend = format!("198.18.{net}.");
    for (iface, _, comment) in &lines {
        assert!(
            comment.contains("service shop/web:http -> backend ")
                && comment.contains(&backend)
                && comment.contains("; nat "),
            "{iface}: {comment}"
        );
        assert!(
            comment.starts_with(&format!("hop {iface} ")),
            "{iface}: {comment}"
        );
    }
    // The SYN at each hop: the client's eth0, the node's two veths, the backend pod's eth0.
    let syn_hops: Vec<&str> = lines
        .iter()
        .filter(|(_, syn, _)| *syn == "1" || *syn == "True")
        .map(|(i, _, _)| *i)
        .collect();
    let client_eth0 = format!("{}/eth0", ns("client"));
    assert!(syn_hops.contains(&client_eth0.as_str()), "{syn_hops:?}");
    assert!(
        syn_hops
            .iter()
            .filter(|i| i.starts_with(&format!("{}/", ns("node"))))
            .count()
            >= 2,
        "{syn_hops:?}"
    );
    assert!(
        syn_hops
            .iter()
            .any(|i| i.starts_with(&format!("{lab}-web")) && i.ends_with("/eth0")),
        "{syn_hops:?}"
    );
    let client_syn = lines
        .iter()
        .find(|(i, syn, _)| *i == client_eth0 && (*syn == "1" || *syn == "True"))
        .unwrap();
    assert!(client_syn.2.contains("src client"), "{}", client_syn.2);
    let _ = std::fs::remove_dir_all(&dir);
}
