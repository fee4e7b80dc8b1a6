//! pcap-filter expressions in the kernel, against tcpdump's own filter. Mixed traffic (TCP,
//! UDP, ICMP, `ICMPv6`, ARP, IPv6, VLAN, IP options, fragments, small and large frames) is
//! sent as raw frames onto a bridge lab, from a and from b, while tcpdump captures a's eth0
//! unfiltered and inspectors trace it, each with one expression of the corpus. For each
//! expression, the frames the inspector wrote are exactly those `tcpdump -r full.pcap EXPR`
//! selects from tcpdump's capture, and its `events_sent` is their number: the rejected
//! packets never reached the ring. Run in batches (several inspectors at once), with the
//! default global hooks and with TCX.
mod support;

use std::{path::Path, process::Command, time::Duration};

use support::{
    BridgeLab, Inspector,
    pcap::{Frame, pcap_frames, pcapng_packets, stop_tcpdump, tcpdump},
};

// ---- frames ----------------------------------------------------------------------------

const A: [u8; 4] = [198, 18, 0, 2];
const B: [u8; 4] = [198, 18, 0, 3];
const C: [u8; 4] = [198, 18, 0, 4];
const BCAST: [u8; 4] = [198, 18, 0, 255];
/// Link-local IPv6 (never routed off the link) for a and b, and all-nodes multicast.
const A6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const B6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
const ALL6: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn vlan(dst: [u8; 6], src: [u8; 6], vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = ethertype.to_be_bytes().to_vec();
    inner.extend(payload);
    let mut tag = vid.to_be_bytes().to_vec();
    tag.extend(inner);
    eth(dst, src, 0x8100, &tag)
}

struct Ip4 {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    /// Flags and fragment offset (in 8-byte units).
    frag: u16,
    options: Vec<u8>,
}

fn ip4(h: &Ip4, payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + h.options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut p = vec![0x40 | ihl as u8, 0];
    p.extend(total.to_be_bytes());
    p.extend([0x12, 0x34]);
    p.extend(h.frag.to_be_bytes());
    p.extend([h.ttl, h.proto, 0, 0]);
    p.extend(h.src);
    p.extend(h.dst);
    p.extend(&h.options);
    let c = csum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend(payload);
    p
}

fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ip4(
        &Ip4 {
            src,
            dst,
            proto,
            ttl: 64,
            frag: 0,
            options: Vec::new(),
        },
        payload,
    )
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend(dport.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend(dport.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

fn icmp(kind: u8, code: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0, 0x42, 0x42, 0, 1];
    m.extend(payload);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn ip6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((payload.len() as u16).to_be_bytes());
    p.extend([next, 64]);
    p.extend(src);
    p.extend(dst);
    p.extend(payload);
    p
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend(op.to_be_bytes());
    a.extend(sha);
    a.extend(spa);
    a.extend(tha);
    a.extend(tpa);
    a
}

/// What a sends (its eth0 egress) and what b sends to a (a's eth0 ingress).
fn mixed(ma: [u8; 6], mb: [u8; 6]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    const IP: u16 = 0x0800;
    const IP6: u16 = 0x86dd;
    let bc = [0xff; 6];
    let get = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    let big = vec![0x5a; 560];
    let frag_first = Ip4 {
        src: A,
        dst: B,
        proto: 17,
        ttl: 64,
        frag: 0x2000,
        options: Vec::new(),
    };
    let frag_next = Ip4 {
        src: A,
        dst: B,
        proto: 17,
        ttl: 64,
        frag: 0x0003,
        options: Vec::new(),
    };
    let with_options = Ip4 {
        src: A,
        dst: B,
        proto: 6,
        ttl: 3,
        frag: 0x4000,
        options: vec![1, 1, 1, 0],
    };
    let from_a = vec![
        eth(bc, ma, 0x0806, &arp(1, ma, A, [0; 6], B)),
        eth(mb, ma, IP, &v4(A, B, 6, &tcp(40000, 80, 0x02, &[]))),
        eth(mb, ma, IP, &v4(A, B, 6, &tcp(40001, 443, 0x02, &[]))),
        eth(mb, ma, IP, &v4(A, B, 6, &tcp(40002, 80, 0x18, get))),
        eth(mb, ma, IP, &v4(A, C, 6, &tcp(40003, 22, 0x11, &[]))),
        eth(mb, ma, IP, &v4(A, C, 6, &tcp(40004, 8080, 0x12, &[]))),
        eth(mb, ma, IP, &v4(A, B, 6, &tcp(40005, 80, 0x10, &big))),
        eth(mb, ma, IP, &v4(A, B, 17, &udp(5353, 53, b"query"))),
        eth(mb, ma, IP, &v4(A, C, 17, &udp(123, 123, &[7; 200]))),
        eth(bc, ma, IP, &v4(A, BCAST, 17, &udp(68, 67, &[1; 40]))),
        eth(
            [0x01, 0, 0x5e, 0, 0, 0xfb],
            ma,
            IP,
            &v4(A, [224, 0, 0, 251], 17, &udp(5353, 5353, b"mdns")),
        ),
        eth(mb, ma, IP, &v4(A, B, 1, &icmp(8, 0, &[9; 56]))),
        eth(mb, ma, IP, &v4(A, C, 1, &icmp(13, 0, &[0; 12]))),
        eth(mb, ma, IP, &v4(A, B, 1, &icmp(3, 3, &[0; 28]))),
        eth(mb, ma, IP, &ip4(&frag_first, &udp(9000, 9001, &[3; 56]))),
        eth(mb, ma, IP, &ip4(&frag_next, &[4; 40])),
        eth(mb, ma, IP, &ip4(&with_options, &tcp(40006, 80, 0x02, &[]))),
        vlan(mb, ma, 100, IP, &v4(A, B, 17, &udp(5000, 5000, b"tagged"))),
        vlan(mb, ma, 200, IP, &v4(A, B, 6, &tcp(40007, 80, 0x02, &[]))),
        vlan(bc, ma, 100, 0x0806, &arp(1, ma, A, [0; 6], C)),
        eth(mb, ma, IP6, &ip6(A6, B6, 58, &icmp(128, 0, &[5; 32]))),
        eth(
            [0x33, 0x33, 0, 0, 0, 1],
            ma,
            IP6,
            &ip6(A6, ALL6, 58, &icmp(134, 0, &[0; 8])),
        ),
        eth(mb, ma, IP6, &ip6(A6, B6, 17, &udp(5353, 53, b"q6"))),
        eth(mb, ma, IP6, &ip6(A6, B6, 6, &tcp(40008, 443, 0x02, &[]))),
        eth(
            [0x01, 0x80, 0xc2, 0, 0, 0x0e],
            ma,
            0x88cc,
            &[2, 7, 4, 1, 2, 3, 4, 5, 6, 0, 0],
        ),
        eth(mb, ma, IP, &v4(A, B, 17, &udp(33000, 33434, &[]))),
    ];
    let from_b = vec![
        eth(ma, mb, 0x0806, &arp(2, mb, B, ma, A)),
        eth(ma, mb, IP, &v4(B, A, 6, &tcp(80, 40000, 0x12, &[]))),
        eth(ma, mb, IP, &v4(B, A, 6, &tcp(443, 40001, 0x14, &[]))),
        eth(ma, mb, IP, &v4(B, A, 1, &icmp(0, 0, &[9; 56]))),
        vlan(
            ma,
            mb,
            100,
            IP,
            &v4(B, A, 17, &udp(5000, 5000, b"tagged back")),
        ),
        vlan(ma, mb, 300, IP, &v4(B, A, 1, &icmp(8, 0, &[1; 16]))),
        eth(ma, mb, IP6, &ip6(B6, A6, 58, &icmp(129, 0, &[5; 32]))),
        eth(ma, mb, IP, &v4(B, A, 17, &udp(53, 5353, &[8; 300]))),
    ];
    (from_a, from_b)
}

/// Sends `frames` out of `ns`'s eth0 through an `AF_PACKET` socket, a few ms apart (so
/// replies interleave in a fixed order).
fn inject(ns: &str, frames: Vec<Vec<u8>>) {
    support::kube::in_netns(ns, move || {
        // SAFETY: plain socket calls on a socket this thread owns; the address and buffers
        // live across each call.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "AF_PACKET socket");
            let ifindex = libc::if_nametoindex(c"eth0".as_ptr());
            assert!(ifindex > 0);
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex as i32;
            addr.sll_halen = 6;
            for f in &frames {
                let n = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(n, f.len() as isize, "sendto");
                std::thread::sleep(Duration::from_millis(3));
            }
            libc::close(fd);
        }
    })
    .join()
    .expect("inject");
}

fn mac(ns: &str) -> [u8; 6] {
    let s = support::in_ns(ns, &["cat", "/sys/class/net/eth0/address"]);
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

// ---- the corpus ------------------------------------------------------------------------

/// At least 40 expressions: addresses, nets, ports, port ranges, protocols, ICMP types, TCP
/// flags, VLAN, length, arithmetic on packet bytes, negation and precedence. `{ma}` is a's
/// MAC address.
const CORPUS: &[&str] = &[
    "host 198.18.0.3",
    "src host 198.18.0.2",
    "dst host 198.18.0.4",
    "src 198.18.0.3",
    "net 198.18.0.0/24",
    "dst net 198.18.0.0 mask 255.255.255.252",
    "host 198.18.0.3 and (tcp port 80 or icmp)",
    "port 80",
    "dst port 443",
    "src port 5353",
    "portrange 50-100",
    "tcp dst portrange 400-500",
    "udp",
    "tcp",
    "icmp",
    "icmp6",
    "arp",
    "ip6",
    "ip",
    "not ip",
    "ip proto 17",
    "ether proto 0x88cc",
    "ether broadcast",
    "ether multicast",
    "ether src {ma}",
    "ip multicast",
    "icmp[icmptype] = icmp-echo",
    "icmp and icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp[0] = 3 and icmp[1] = 3",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
    "tcp[tcpflags] & tcp-fin != 0",
    "tcp[13] & 8 != 0",
    "vlan",
    "vlan 100",
    "vlan 200 and tcp",
    "vlan and udp port 5000",
    "vlan 300 and icmp",
    "len > 200",
    "len <= 64",
    "greater 500",
    "less 60",
    "ip[8] = 64",
    "ip[8] < 10",
    "ip[6:2] & 0x1fff != 0",
    "ip[6:2] & 0x3fff != 0",
    "ip[0] & 0xf > 5",
    "tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 100",
    "udp[4:2] * 2 + 1 > 100",
    "not (port 80 or port 443)",
    "tcp or udp and not host 198.18.0.4",
    "(tcp or udp) and not host 198.18.0.4",
    "!arp && !ip6",
    "ip6 and udp port 53",
    "icmp6 and ip6[40] = 128",
    "ip6 and ip6[40] == 129 or arp",
    "not vlan and not ip and not ip6",
];

/// tcpdump's selection from its own full capture.
fn tcpdump_selects(full: &Path, expr: &str, out: &Path) -> Vec<Frame> {
    let o = Command::new("tcpdump")
        .arg("-r")
        .arg(full)
        .arg("-w")
        .arg(out)
        .arg(expr)
        .output()
        .expect("tcpdump -r");
    assert!(
        o.status.success(),
        "tcpdump -r '{expr}': {}",
        String::from_utf8_lossy(&o.stderr)
    );
    pcap_frames(&std::fs::read(out).unwrap())
}

fn events_sent(stderr: &str) -> u64 {
    stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("events_sent="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no events_sent in {stderr}"))
}

/// Runs the corpus in batches of `batch` inspectors (extra arguments `mode`).
fn corpus(tag: &str, mode: &[&str], batch: usize) {
    let lab = BridgeLab::new(tag);
    // No IPv6 of their own (router solicitations, MLD reports at random moments): the only
    // traffic on a's eth0 is the frames sent and what b's stack answers.
    for ns in lab.all() {
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    }
    let (ma, mb) = (mac(&lab.a.name), mac(&lab.b.name));
    let text = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let ma_text = text(ma);
    // Permanent neighbours everywhere: no ARP probes of their own at random moments
    // (between rounds); and b keeps the unfinished datagram's fragments for an hour instead
    // of answering "reassembly time exceeded" 30 s later, in some other round.
    let hosts = [
        (&lab.br, "br0", "198.18.0.1"),
        (&lab.a, "eth0", "198.18.0.2"),
        (&lab.b, "eth0", "198.18.0.3"),
        (&lab.c, "eth0", "198.18.0.4"),
    ];
    let macs: Vec<String> = hosts
        .iter()
        .map(|(ns, dev, _)| {
            support::in_ns(&ns.name, &["cat", &format!("/sys/class/net/{dev}/address")])
                .trim()
                .to_owned()
        })
        .collect();
    for (ns, dev, own) in hosts {
        for ((_, _, ip), m) in hosts.iter().zip(&macs) {
            if *ip != own {
                ns.exec(&[
                    "ip",
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    m,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ]);
            }
        }
    }
    lab.b.exec(&["sysctl", "-qw", "net.ipv4.ipfrag_time=3600"]);
    let dir = std::env::temp_dir().join(support::unique("filters"));
    std::fs::create_dir_all(&dir).unwrap();
    let exprs: Vec<String> = CORPUS.iter().map(|e| e.replace("{ma}", &ma_text)).collect();
    assert!(exprs.len() >= 40);
    let mut checked = 0;
    for (round, chunk) in exprs.chunks(batch).enumerate() {
        support::wait_quiet(&lab.all(), Duration::from_millis(300));
        let full = dir.join(format!("full{round}.pcap"));
        let td = tcpdump(&lab.a.name, "eth0", &[], &full);
        let running: Vec<(String, std::path::PathBuf, Inspector)> = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let file = dir.join(format!("ours{round}-{i}.pcapng"));
                let mut args = vec![
                    "trace",
                    "-w",
                    file.to_str().unwrap(),
                    "--netns",
                    &lab.a.name,
                    "-i",
                    "eth0",
                    "--no-drops",
                    "-q",
                ];
                args.extend(mode);
                args.push(e);
                let insp = Inspector::start(&args);
                (e.clone(), file, insp)
            })
            .collect();
        let (from_a, from_b) = mixed(ma, mb);
        inject(&lab.a.name, from_a);
        inject(&lab.b.name, from_b);
        support::wait_quiet(&lab.all(), Duration::from_millis(300));
        stop_tcpdump(td, &full);
        let total = pcap_frames(&std::fs::read(&full).unwrap()).len();
        assert!(total >= 34, "tcpdump saw {total} frames");
        for (i, (expr, file, insp)) in running.into_iter().enumerate() {
            let out = insp.interrupt_ok();
            let said = String::from_utf8_lossy(&out.stderr).to_string();
            let theirs = tcpdump_selects(&full, &expr, &dir.join(format!("sel{round}-{i}.pcap")));
            let ours: Vec<Frame> = pcapng_packets(&std::fs::read(&file).unwrap())
                .into_iter()
                .map(|p| p.frame)
                .collect();
            // Ours keep whole frames up to SNAP_MAX bytes (these are up to 600 bytes, built
            // in one piece: the global hooks read them whole too).
            let cut = |f: &Frame| Frame {
                data: f.data[..f.data.len().min(inspector_common::flow::SNAP_MAX)].to_vec(),
                len: f.len,
            };
            let mut want: Vec<Frame> = theirs.iter().map(cut).collect();
            let mut got = ours.clone();
            want.sort();
            got.sort();
            let only = |x: &[Frame], y: &[Frame]| -> Vec<String> {
                x.iter()
                    .filter(|f| !y.contains(f))
                    .map(|f| format!("{} bytes {:02x?}", f.len, &f.data[..f.data.len().min(42)]))
                    .collect()
            };
            assert_eq!(
                got.len(),
                want.len(),
                "'{expr}' {mode:?}: {} frames captured, tcpdump selects {} of {total}; only \
                 ours: {:#?}; only tcpdump's: {:#?}",
                got.len(),
                want.len(),
                only(&got, &want),
                only(&want, &got),
            );
            assert_eq!(
                got, want,
                "'{expr}' {mode:?}: not the frames tcpdump selects"
            );
            assert_eq!(
                events_sent(&said),
                want.len() as u64,
                "'{expr}' {mode:?}: events_sent"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, exprs.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn corpus_matches_tcpdump_with_global_hooks() {
    corpus("fg", &[], 10);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn corpus_matches_tcpdump_with_tcx() {
    corpus("ft", &["--attach", "tcx"], 10);
}
