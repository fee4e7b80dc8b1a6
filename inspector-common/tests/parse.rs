//! The shared packet parser on crafted packets: every protocol it knows, VLAN tags, IPv4
//! options, IPv6 extension headers, and truncated or malformed packets (which must be flagged,
//! never panic).
use inspector_common::parse::{self, Parsed, status};

const MAC: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = MAC.to_vec();
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// One VLAN tag (TCI, then the `EtherType` of what follows) and its payload.
fn tag(id: u16, inner: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&inner.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn ipv4(proto: u8, opts: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    assert_eq!(
        opts.len() % 4,
        0,
        "test bug: IPv4 options must be 32-bit aligned"
    );
    let ihl = 5 + opts.len() / 4;
    let total = (ihl * 4 + l4.len()) as u16;
    let mut v = vec![0x40 | ihl as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&[198, 18, 0, 2]);
    v.extend_from_slice(&[198, 18, 0, 3]);
    v.extend_from_slice(opts);
    v.extend_from_slice(l4);
    v
}

fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    let mut src = [0u8; 16];
    src[0] = 0xfd;
    src[15] = 2;
    let mut dst = src;
    dst[15] = 3;
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(rest);
    v
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend(std::iter::repeat_n(0xab, payload));
    v
}

fn icmp(ty: u8, code: u8, id: u16) -> Vec<u8> {
    let mut v = vec![ty, code, 0, 0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0, 7]);
    v
}

/// An IPv6 extension header of `len8` 8-byte units (hop-by-hop, routing, dest-opts layout).
fn ext(next: u8, len8: u8) -> Vec<u8> {
    let mut v = vec![next, len8];
    v.extend(std::iter::repeat_n(0, usize::from(len8) * 8 + 6));
    v
}

fn p(pkt: &[u8]) -> Parsed {
    parse::parse(pkt)
}

#[test]
fn ipv4_tcp_ports_and_flags() {
    let r = p(&eth(0x0800, &ipv4(6, &[], 0, &tcp(40000, 80, 0x12))));
    assert_eq!(
        (
            r.ethertype,
            r.proto,
            r.sport,
            r.dport,
            r.tcp_flags,
            r.status
        ),
        (0x0800, 6, 40000, 80, 0x12, 0)
    );
    assert_eq!(&r.src[..4], &[198, 18, 0, 2]);
    assert_eq!(&r.dst[..4], &[198, 18, 0, 3]);
    assert_eq!(
        &r.src[4..],
        &[0; 12],
        "IPv4 leaves the rest of the address zero"
    );
    assert_eq!((r.l3_off, r.l4_off), (14, 34));
}

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    let opts = [1, 1, 1, 0, 0x94, 4, 0, 0]; // NOPs + router alert, IHL = 7
    let r = p(&eth(0x0800, &ipv4(17, &opts, 0, &udp(5353, 53, 4))));
    assert_eq!(
        (r.proto, r.sport, r.dport, r.status, r.l4_off),
        (17, 5353, 53, 0, 14 + 28)
    );
}

#[test]
fn ipv4_options_cut_short_are_truncated() {
    let mut ip = ipv4(17, &[], 0, &[]);
    ip[0] = 0x4f; // IHL 15: 60-byte header, but only 20 bytes present
    ip[2..4].copy_from_slice(&60u16.to_be_bytes());
    let r = p(&eth(0x0800, &ip));
    assert_eq!(r.status, status::TRUNCATED);
    assert_eq!((r.sport, r.dport), (0, 0));
}

#[test]
fn ipv4_bad_ihl_and_version_are_malformed() {
    let mut ip = ipv4(6, &[], 0, &tcp(1, 2, 0));
    ip[0] = 0x44;
    assert_eq!(p(&eth(0x0800, &ip)).status, status::MALFORMED);
    ip[0] = 0x55;
    assert_eq!(p(&eth(0x0800, &ip)).status, status::MALFORMED);
}

#[test]
fn ipv4_fragments() {
    // First fragment (MF set, offset 0) still carries the L4 header.
    let first = p(&eth(0x0800, &ipv4(17, &[], 0x2000, &udp(1000, 2000, 8))));
    assert_eq!((first.sport, first.dport, first.status), (1000, 2000, 0));
    // A later fragment has no L4 header: flagged, ports left at zero.
    let later = p(&eth(0x0800, &ipv4(17, &[], 0x0010, &udp(1000, 2000, 8))));
    assert_eq!(
        (later.sport, later.dport, later.status, later.proto),
        (0, 0, status::FRAGMENT, 17)
    );
}

#[test]
fn icmp_echo_and_unreachable() {
    let echo = p(&eth(0x0800, &ipv4(1, &[], 0, &icmp(8, 0, 0x1234))));
    assert_eq!((echo.proto, echo.sport, echo.dport), (1, 0x1234, 8 << 8));
    let unreach = p(&eth(0x0800, &ipv4(1, &[], 0, &icmp(3, 3, 0x1234))));
    assert_eq!(
        (unreach.sport, unreach.dport),
        (0, 3 << 8 | 3),
        "only echo types carry an id"
    );
}

#[test]
fn vlan_single_and_double_tags() {
    // PCP 1 in the top bits must not leak into the VLAN id.
    let one = p(&eth(
        0x8100,
        &tag(0x2064, 0x0800, &ipv4(17, &[], 0, &udp(1, 2, 0))),
    ));
    assert_eq!(
        (one.vlan, one.ethertype, one.sport, one.status, one.l3_off),
        (100, 0x0800, 1, 0, 18)
    );
    let inner = tag(200, 0x86dd, &ipv6(6, &tcp(3, 4, 0x02)));
    let qinq = p(&eth(0x88a8, &tag(300, 0x8100, &inner)));
    assert_eq!(
        (
            qinq.vlan,
            qinq.ethertype,
            qinq.proto,
            qinq.sport,
            qinq.l3_off
        ),
        (300, 0x86dd, 6, 3, 22)
    );
    // A third tag is past what the parser steps over.
    let three = eth(0x8100, &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0]);
    assert_eq!(p(&three).status, status::NON_IP | status::VLAN_LIMIT);
}

#[test]
fn ipv6_tcp() {
    let r = p(&eth(0x86dd, &ipv6(6, &tcp(443, 50000, 0x18))));
    assert_eq!(
        (
            r.ethertype,
            r.proto,
            r.sport,
            r.dport,
            r.tcp_flags,
            r.status
        ),
        (0x86dd, 6, 443, 50000, 0x18, 0)
    );
    assert_eq!((r.src[0], r.src[15], r.dst[15]), (0xfd, 2, 3));
}

#[test]
fn ipv6_extension_headers_are_followed() {
    // hop-by-hop -> destination options (16 bytes) -> routing -> UDP
    let mut rest = ext(60, 0);
    rest.extend(ext(43, 1));
    rest.extend(ext(17, 0));
    rest.extend(udp(546, 547, 2));
    let r = p(&eth(0x86dd, &ipv6(0, &rest)));
    assert_eq!((r.proto, r.sport, r.dport, r.status), (17, 546, 547, 0));
    assert_eq!(r.l4_off, 14 + 40 + 8 + 16 + 8);
}

#[test]
fn ipv6_authentication_header() {
    // AH: payload len counts 4-byte units minus 2; 24 bytes here (len field 4).
    let mut ah = vec![6, 4];
    ah.extend([0u8; 22]);
    ah.extend(tcp(22, 60000, 0x10));
    let r = p(&eth(0x86dd, &ipv6(51, &ah)));
    assert_eq!((r.proto, r.sport, r.dport, r.status), (6, 22, 60000, 0));
}

#[test]
fn ipv6_fragment_header() {
    let mut first = vec![17, 0, 0, 1, 0, 0, 0, 9]; // offset 0, M=1
    first.extend(udp(7, 8, 16));
    let r = p(&eth(0x86dd, &ipv6(44, &first)));
    assert_eq!((r.proto, r.sport, r.dport, r.status), (17, 7, 8, 0));
    let later = vec![17, 0, 0x05, 0x00, 0, 0, 0, 9]; // offset 160
    let r = p(&eth(0x86dd, &ipv6(44, &later)));
    assert_eq!((r.proto, r.sport, r.status), (17, 0, status::FRAGMENT));
}

#[test]
fn ipv6_too_many_extension_headers() {
    let mut rest = Vec::new();
    for _ in 0..7 {
        rest.extend(ext(60, 0));
    }
    rest.extend(udp(1, 2, 0));
    let r = p(&eth(0x86dd, &ipv6(60, &rest)));
    assert_eq!(r.status, status::EXT_LIMIT);
}

#[test]
fn icmpv6_echo() {
    let r = p(&eth(0x86dd, &ipv6(58, &icmp(128, 0, 77))));
    assert_eq!((r.proto, r.sport, r.dport), (58, 77, 128 << 8));
    let ns = p(&eth(0x86dd, &ipv6(58, &icmp(135, 0, 77))));
    assert_eq!((ns.sport, ns.dport), (0, 135 << 8));
}

#[test]
fn arp_addresses_and_opcode() {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend([2, 0, 0, 0, 0, 1, 198, 18, 0, 2]);
    arp.extend([0, 0, 0, 0, 0, 0, 198, 18, 0, 3]);
    let r = p(&eth(0x0806, &arp));
    assert_eq!(
        (r.ethertype, r.dport, r.status),
        (0x0806, 1, status::NON_IP)
    );
    assert_eq!(
        (&r.src[..4], &r.dst[..4]),
        (&[198, 18, 0, 2][..], &[198, 18, 0, 3][..])
    );
}

#[test]
fn other_ethertypes_are_recorded_as_such() {
    let r = p(&eth(0x88cc, &[0; 30])); // LLDP
    assert_eq!(
        (r.ethertype, r.proto, r.status),
        (0x88cc, 0, status::NON_IP)
    );
}

#[test]
fn truncated_at_every_layer() {
    assert_eq!(
        p(&[0u8; 10]).status,
        status::TRUNCATED,
        "shorter than Ethernet"
    );
    assert_eq!(p(&[]).status, status::TRUNCATED, "empty");
    assert_eq!(
        p(&eth(0x0800, &[0x45, 0])).status,
        status::TRUNCATED,
        "cut IPv4 header"
    );
    assert_eq!(
        p(&eth(0x86dd, &[0x60; 20])).status,
        status::TRUNCATED,
        "cut IPv6 header"
    );
    assert_eq!(
        p(&eth(0x8100, &[0, 1])).status,
        status::TRUNCATED,
        "cut VLAN tag"
    );
    // TCP cut after 10 bytes: ports still read, packet flagged.
    let full = eth(0x0800, &ipv4(6, &[], 0, &tcp(1234, 80, 2)));
    let r = p(&full[..14 + 20 + 10]);
    assert_eq!((r.sport, r.dport, r.status), (1234, 80, status::TRUNCATED));
    // UDP with 3 bytes: not even the ports.
    let full = eth(0x0800, &ipv4(17, &[], 0, &udp(1, 2, 0)));
    let r = p(&full[..14 + 20 + 3]);
    assert_eq!((r.sport, r.dport, r.status), (0, 0, status::TRUNCATED));
    // IPv6 extension header cut in the middle.
    let r = p(&eth(0x86dd, &ipv6(0, &[17])));
    assert_eq!(r.status, status::TRUNCATED);
    // ICMP shorter than its 8-byte header.
    let r = p(&eth(0x0800, &ipv4(1, &[], 0, &[8, 0, 0])));
    assert_eq!(r.status, status::TRUNCATED);
}

#[test]
fn tcp_data_offset_below_five_is_malformed() {
    let mut t = tcp(1, 2, 0x02);
    t[12] = 0x40;
    let r = p(&eth(0x0800, &ipv4(6, &[], 0, &t)));
    assert_eq!((r.sport, r.status), (1, status::MALFORMED));
}

#[test]
fn ipv4_total_length_below_header_is_malformed() {
    let mut ip = ipv4(17, &[], 0, &udp(1, 2, 0));
    ip[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(p(&eth(0x0800, &ip)).status, status::MALFORMED);
}

/// Random bytes (valid `EtherTypes` spliced in so the deeper layers get exercised) must never
/// panic or loop, whatever their length.
#[test]
fn random_garbage_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let types = [0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806];
    for _ in 0..50_000 {
        let len = (next() % 160) as usize;
        let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 14 {
            let t = types[(next() % 5) as usize];
            pkt[12..14].copy_from_slice(&t.to_be_bytes());
            if len > 14 && next() % 2 == 0 {
                pkt[14] = if t == 0x86dd { 0x60 } else { 0x45 };
            }
        }
        let r = p(&pkt);
        assert!(
            usize::from(r.l4_off) <= len.max(14 + 60 + 6 * 2048),
            "offset beyond reason"
        );
    }
}

/// The fast path (untagged IPv4 without options) must give exactly what the general parser
/// gives, for every protocol and for cut or odd packets near its edges.
#[test]
fn fast_path_agrees_with_general_parser() {
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut fast_hits = 0;
    for i in 0..40_000u32 {
        let proto = [6u8, 17, 1, 132, 33, 136, 47, 6, 17][(i % 9) as usize];
        let l4: Vec<u8> = match proto {
            6 => tcp(next() as u16, next() as u16, next() as u8),
            17 | 136 => udp(next() as u16, next() as u16, (next() % 40) as usize),
            1 => icmp(
                [0u8, 8, 3, 11, 13][(next() % 5) as usize],
                next() as u8,
                next() as u16,
            ),
            _ => (0..(next() % 30)).map(|_| next() as u8).collect(),
        };
        let frag = [0u16, 0x4000, 0x2000, 0x0001, 0x2010][(next() % 5) as usize];
        let mut pkt = eth(0x0800, &ipv4(proto, &[], frag, &l4));
        // Sometimes corrupt one header byte or cut the packet short.
        if next() % 4 == 0 {
            let at = (next() as usize) % pkt.len();
            pkt[at] = next() as u8;
        }
        if next() % 4 == 0 {
            let keep = (next() as usize) % (pkt.len() + 1);
            pkt.truncate(keep);
        }
        let fast = parse::parse(&pkt[..]);
        let general = parse::parse_general(&pkt[..]);
        assert_eq!(fast, general, "packet {i}: {pkt:02x?}");
        if let Some(h) = pkt
            .get(..parse::FAST_LEN)
            .and_then(|h| <[u8; parse::FAST_LEN]>::try_from(h).ok())
            && parse::fast_v4(&h, pkt.len()).is_some()
        {
            fast_hits += 1;
        }
    }
    assert!(
        fast_hits > 10_000,
        "the fast path was barely exercised ({fast_hits})"
    );
}
