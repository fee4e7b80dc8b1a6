//! What each fuzz target runs (`inspector/fuzz`, `cargo xtask fuzz`): one function per
//! reader of input the inspector does not control. The fuzz targets are one line each, and
//! `tests/fuzz_regressions.rs` runs the same functions over every input a fuzzer ever
//! found, so a finding stays a regression test.
//!
//! Each function takes arbitrary bytes and must neither panic nor allocate without bound;
//! errors are answers, not failures.
use std::io::Cursor;

/// A harness: arbitrary bytes in, nothing out.
pub type Harness = fn(&[u8]);

/// Every target by name, as `cargo xtask fuzz` and the regression test list them.
pub const TARGETS: &[(&str, Harness)] = &[
    ("packet_parser", packet_parser),
    ("iptables_save", iptables_save),
    ("nft_json", nft_json),
    ("docker_client", docker_client),
    ("cri_info", cri_info),
    ("conntrack_netlink", conntrack_netlink),
    ("lab_spec", lab_spec),
    ("btf", btf),
    ("filter_expr", filter_expr),
    ("cbpf_program", cbpf_program),
    ("capture_reader", capture_reader),
];

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

/// The packet parser the kernel programs run (`inspector_common::parse`), on any frame.
/// What it reports must lie inside the frame.
pub fn packet_parser(data: &[u8]) {
    for p in [
        inspector_common::parse::parse(data),
        inspector_common::parse::parse_general(data),
    ] {
        assert!(usize::from(p.l3_off) <= data.len(), "l3 past the frame");
        assert!(usize::from(p.l4_off) <= data.len(), "l4 past the frame");
        assert!(p.l4_off == 0 || p.l4_off >= p.l3_off, "l4 before l3");
    }
}

/// `iptables-save` output of any kube-proxy version.
pub fn iptables_save(data: &[u8]) {
    let _ = crate::services::iptables::parse(text(data));
}

/// `nft -j list ruleset` output.
pub fn nft_json(data: &[u8]) {
    let _ = crate::services::nft::parse(text(data));
}

/// The Docker API's answers: an HTTP response (sized, chunked or to the end), its body as
/// `/containers/ID/json`, and its lines as events.
pub fn docker_client(data: &[u8]) {
    use crate::identity::docker;
    if let Ok((_, body)) = docker::read_response(&mut Cursor::new(data)) {
        let _ = docker::parse_inspect(&body);
    }
    let _ = docker::parse_inspect(data);
    for line in data.split(|b| *b == b'\n') {
        let _ = docker::parse_event(line);
    }
}

/// CRI's verbose `info` of a pod sandbox (JSON from containerd or CRI-O).
pub fn cri_info(data: &[u8]) {
    let _ = crate::identity::cri::parse_info(text(data));
}

/// A datagram of ctnetlink dump replies: split into messages, each decoded.
pub fn conntrack_netlink(data: &[u8]) {
    let mut out = Vec::new();
    let _ = crate::net::nl::replies(data, &mut out);
    for m in out.iter().filter(|m| m.len() >= 4) {
        let _ = crate::services::conntrack::decode(&m[4..]);
    }
}

/// A lab spec (TOML), parsed and planned (no side effects: planning only checks).
pub fn lab_spec(data: &[u8]) {
    if let Ok(spec) = crate::lab::LabSpec::from_toml(text(data)) {
        let _ = spec.plan();
    }
}

/// A BTF blob, and the lookups the probe makes in it.
pub fn btf(data: &[u8]) {
    if let Some(b) = crate::probe::btf::Btf::parse(data) {
        let _ = b.enum_values("skb_drop_reason");
        let _ = b.has_type("sk_buff");
        let _ = b.offset("sk_buff", "dev");
        let _ = b.bit_offset("sk_buff", "pkt_type");
        let _ = b.offset("net_device", "nd_net.net.ns.inum");
    }
}

/// A filter expression (libpcap's grammar, compiled and translated for the kernel) run on a
/// frame; and the selectors' parsers.
pub fn filter_expr(data: &[u8]) {
    use crate::identity::select;
    // An Ethernet/IPv4/TCP frame with a few payload bytes.
    const FRAME: [u8; 58] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0, 0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0,
        198, 18, 0, 1, 198, 18, 0, 2, 0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x10,
        0, 0, 0, 0, 0, 1, 2, 3, 4,
    ];
    let s = text(data);
    if let Ok(f) = crate::probe::pcap::Filter::new(s) {
        let _ = f.matches(&FRAME, 58);
        let _ = f.matches(&FRAME[..20], 58);
    }
    let _ = select::parse_pod(s);
    let _ = select::parse_container(s);
    let _ = select::parse_labels(s);
    let _ = select::parse_namespace(s);
    let _ = crate::flows::filter::parse_host(s);
    let _ = crate::flows::filter::parse_port(s);
}

/// Any classic BPF program (not only libpcap's): the translator for the kernel must refuse
/// what it cannot translate, and the interpreter must run anything.
pub fn cbpf_program(data: &[u8]) {
    use crate::probe::pcap::{cbpf, translate};
    let (prog, frame) = data.split_at(data.len().min(8 * 64) / 8 * 8);
    let prog: Vec<cbpf::Insn> = prog
        .chunks_exact(8)
        .map(|c| cbpf::Insn {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let _ = translate::translate(&prog);
    let wire = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let _ = cbpf::run(&prog, frame, wire);
}

/// A capture file (pcapng or pcap), as `trace -r` reads it.
pub fn capture_reader(data: &[u8]) {
    let filter = crate::flows::filter::Filter::default();
    let sel = crate::session::replay::Selection {
        filter: &filter,
        netns: &[],
        interfaces: &[],
    };
    let _ =
        crate::session::replay::read_from(Box::new(Cursor::new(data)), "fuzz input", &sel, |_| {
            Ok(true)
        });
}
