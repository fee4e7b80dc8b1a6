//! `trace -r FILE`: packets read back from a capture file (pcapng, ours or anyone's, or
//! classic pcap) as the records `trace` prints, filtered as `trace` filters: the expression
//! (run by the classic BPF interpreter, `probe::pcap::cbpf`, on the bytes kept), the
//! `--proto/--host/--port` shorthands (as the equivalent expression), `--netns` and `-i`
//! (against the `netns/ifname` interface names our files carry). What only the live
//! session knows comes from each packet's comment: its hook and both workloads.
use std::{io::Read, path::Path};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{
        Block, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
        },
    },
};

use crate::{
    flows::{
        Header,
        filter::{Filter, ProtoFilter},
    },
    identity::Endpoint,
    probe::pcap,
};
use inspector_common::{Direction, FlowKey, parse};

use super::records::Packet;

/// Why a file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("{path}: not a pcap or pcapng capture file ({what})")]
    Format { path: String, what: String },
    #[error(transparent)]
    Filter(#[from] pcap::FilterError),
    #[error("--service needs the live node's conntrack; it cannot filter a capture file")]
    Service,
}

/// What selects packets from a file.
pub struct Selection<'a> {
    pub filter: &'a Filter,
    /// `--netns` values, matched against the namespace part of interface names.
    pub netns: &'a [String],
    /// `-i` values, matched against the device part.
    pub interfaces: &'a [String],
}

/// The shorthands as a libpcap expression, joined by `and` with the expression given.
fn expression(f: &Filter) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(e) = &f.expression {
        parts.push(format!("({})", e.expr));
    }
    if let Some(p) = f.proto {
        parts.push(match p {
            ProtoFilter::Ip {
                proto,
                v: Some(parse::ETH_P_IP),
            } => format!("ip proto {proto}"),
            ProtoFilter::Ip { proto, v: Some(_) } => format!("ip6 proto {proto}"),
            ProtoFilter::Ip { proto, v: None } => {
                format!("(ip proto {proto} or ip6 proto {proto})")
            }
            ProtoFilter::Ether(t) => format!("ether proto 0x{t:04x}"),
        });
    }
    if let Some(h) = &f.host {
        parts.push(format!("net {h}"));
    }
    if let Some(p) = f.port {
        parts.push(format!("port {p}"));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// The hook names `trace` uses, for a comment's hook.
const HOOKS: [&str; 5] = [
    "tc-ingress",
    "tc-egress",
    "net_dev_queue",
    "net_dev_start_xmit",
    "netif_receive_skb",
];

/// (hook, src, dst) from a comment of ours: "hop NS/IF HOOK; src A; dst B; ...".
fn from_comment(c: &str) -> (Option<&'static str>, Option<String>, Option<String>) {
    let mut hook = None;
    let (mut src, mut dst) = (None, None);
    for part in c.split("; ") {
        if let Some(h) = part.strip_prefix("hop ") {
            hook = h
                .rsplit(' ')
                .next()
                .and_then(|n| HOOKS.iter().find(|k| **k == n).copied());
        } else if let Some(s) = part.strip_prefix("src ") {
            src = (s != "-").then(|| s.to_owned());
        } else if let Some(d) = part.strip_prefix("dst ") {
            dst = (d != "-").then(|| d.to_owned());
        }
    }
    (hook, src, dst)
}

fn endpoint(name: Option<String>) -> Option<Endpoint> {
    name.map(|n| Endpoint {
        name: Some(n),
        id: None,
        kind: None,
        runtime: None,
        network_mode: None,
        shared_by: Vec::new(),
    })
}

/// One packet of the file as a record.
struct Raw<'a> {
    iface: &'a str,
    ts_ns: u64,
    data: &'a [u8],
    len: u32,
    comment: Option<&'a str>,
    /// `epb_flags`' direction bits.
    flags: u32,
}

fn record(r: &Raw<'_>) -> Packet {
    let p = parse::parse(r.data);
    let (hook, src, dst) = r.comment.map(from_comment).unwrap_or_default();
    let direction = match (r.flags & 3, hook) {
        (1, _) | (_, Some("tc-ingress" | "netif_receive_skb")) => Direction::Ingress,
        _ => Direction::Egress,
    };
    let key = FlowKey {
        src: p.src,
        dst: p.dst,
        netns: 0,
        ifindex: 0,
        sport: p.sport,
        dport: p.dport,
        ethertype: p.ethertype,
        vlan: p.vlan,
        proto: p.proto,
        direction: direction as u8,
        hook: 0,
        _pad: 0,
    };
    let (netns_name, ifname) = match r.iface.split_once('/') {
        Some((n, i)) => (n.to_owned(), i.to_owned()),
        None => ("-".to_owned(), r.iface.to_owned()),
    };
    Packet {
        ts_ns: r.ts_ns,
        time_unix_ns: r.ts_ns,
        netns: 0,
        netns_name,
        ifindex: 0,
        ifname,
        hook: hook.unwrap_or("-"),
        direction: direction.as_str(),
        hdr: Header::of_key(&key),
        len: r.len,
        tcp_flags: crate::flows::tcp_flags(p.tcp_flags),
        mark: 0,
        anomalies: crate::flows::anomalies(p.status),
        src_endpoint: endpoint(src),
        dst_endpoint: endpoint(dst),
        service: None,
        bytes: r.data.to_vec(),
        file_comment: r.comment.map(str::to_owned),
    }
}

/// A pcapng timestamp in nanoseconds, given its interface's `if_tsresol` (default:
/// microseconds). pcap-file hands over the raw count as if it were nanoseconds.
fn to_ns(raw: u128, tsresol: Option<u8>) -> u64 {
    let ns = match tsresol.unwrap_or(6) {
        r if r & 0x80 != 0 => (raw * 1_000_000_000) >> (r & 0x7f).min(127),
        r if r <= 9 => raw * 10u128.pow(9 - u32::from(r)),
        r => raw / 10u128.pow(u32::from(r).min(30) - 9),
    };
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Reads `path` (`-`: stdin) and hands each selected packet to `each`, in file order,
/// until it returns false. Returns how many packets the file held.
pub fn read(
    path: &Path,
    sel: &Selection<'_>,
    each: impl FnMut(Packet) -> std::io::Result<bool>,
) -> anyhow::Result<u64> {
    if sel.filter.service.is_some() {
        return Err(ReplayError::Service.into());
    }
    let name = path.display().to_string();
    // Read as it comes (a capture can be larger than memory, or a pipe that never ends).
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(path).map_err(|error| ReplayError::Open {
                path: name.clone(),
                error,
            })?,
        )
    };
    read_from(input, &name, sel, each)
}

/// [`read`] from any reader (`name` for messages).
///
/// # Errors
/// Not a capture, a broken one, or what `each` returned.
pub fn read_from(
    mut input: Box<dyn Read + '_>,
    name: &str,
    sel: &Selection<'_>,
    mut each: impl FnMut(Packet) -> std::io::Result<bool>,
) -> anyhow::Result<u64> {
    if sel.filter.service.is_some() {
        return Err(ReplayError::Service.into());
    }
    let filter = expression(sel.filter)
        .map(|e| pcap::Filter::new(&e))
        .transpose()?;
    let name = name.to_owned();
    let open_err = |error| ReplayError::Open {
        path: name.clone(),
        error,
    };
    let format = |what: String| ReplayError::Format {
        path: name.clone(),
        what,
    };
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_err(e).into()),
        }
    }
    // 64 KiB: one read per 64 KiB streams at memory speed, and a small file pays for
    // zeroing 64 KiB, not a MiB (the fuzz target reads thousands of small files a second).
    let bytes = std::io::BufReader::with_capacity(
        64 << 10,
        std::io::Read::chain(std::io::Cursor::new(head), input),
    );
    let wanted = |iface: &str, data: &[u8], len: u32| {
        let (ns, dev) = iface.split_once('/').unwrap_or(("", iface));
        (sel.netns.is_empty() || sel.netns.iter().any(|n| n == ns))
            && (sel.interfaces.is_empty() || sel.interfaces.iter().any(|i| i == dev))
            && filter.as_ref().is_none_or(|f| f.matches(data, len))
    };
    let mut total = 0u64;
    let magic = &head[..got];
    let classic = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
    ];
    if magic.len() < 4 {
        return Err(format(format!("{got} bytes")).into());
    }
    if magic != [0x0a, 0x0d, 0x0d, 0x0a] && !classic.iter().any(|m| m == magic) {
        return Err(format(format!("it starts with {magic:02x?}")).into());
    }
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(bytes).map_err(|e| format(e.to_string()))?;
        let mut ifaces: Vec<(String, Option<u8>)> = Vec::new();
        while let Some(b) = r.next_block() {
            match b.map_err(|e| format(e.to_string()))? {
                Block::SectionHeader(_) => ifaces.clear(),
                Block::InterfaceDescription(i) => {
                    let mut name = format!("if{}", ifaces.len());
                    let mut resol = None;
                    for o in &i.options {
                        match o {
                            InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                            InterfaceDescriptionOption::IfTsResol(t) => resol = Some(*t),
                            _ => {}
                        }
                    }
                    ifaces.push((name, resol));
                }
                Block::EnhancedPacket(p) => {
                    total += 1;
                    let Some((iface, resol)) = ifaces.get(p.interface_id as usize) else {
                        return Err(
                            format(format!("a packet names interface {}", p.interface_id)).into(),
                        );
                    };
                    if !wanted(iface, &p.data, p.original_len) {
                        continue;
                    }
                    let raw = Raw {
                        iface,
                        ts_ns: to_ns(p.timestamp.as_nanos(), *resol),
                        data: &p.data,
                        len: p.original_len,
                        comment: p.options.iter().find_map(|o| match o {
                            EnhancedPacketOption::Comment(c) => Some(c.as_ref()),
                            _ => None,
                        }),
                        flags: p
                            .options
                            .iter()
                            .find_map(|o| match o {
                                EnhancedPacketOption::Flags(f) => Some(*f),
                                _ => None,
                            })
                            .unwrap_or(0),
                    };
                    if !each(record(&raw))? {
                        break;
                    }
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(bytes).map_err(|e| format(e.to_string()))?;
        let nano = r.header().ts_resolution == pcap_file::TsResolution::NanoSecond;
        while let Some(p) = r.next_raw_packet() {
            let p = p.map_err(|e| format(e.to_string()))?;
            total += 1;
            if !wanted("", &p.data, p.orig_len) {
                continue;
            }
            let frac = u64::from(p.ts_frac) * if nano { 1 } else { 1000 };
            let raw = Raw {
                iface: "-",
                ts_ns: u64::from(p.ts_sec) * 1_000_000_000 + frac,
                data: &p.data,
                len: p.orig_len,
                comment: None,
                flags: 0,
            };
            if !each(record(&raw))? {
                break;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_interface_resolution() {
        assert_eq!(
            to_ns(1_796_334_430_075_779_123, Some(9)),
            1_796_334_430_075_779_123
        );
        assert_eq!(
            to_ns(1_796_334_430_075_779, None),
            1_796_334_430_075_779_000
        );
        assert_eq!(to_ns(3, Some(0x80 | 1)), 1_500_000_000);
    }

    #[test]
    fn comments_give_hook_and_workloads() {
        let (hook, src, dst) =
            from_comment("hop a/eth0 tc-egress; src web (container, docker); dst -; nat x / y");
        assert_eq!(hook, Some("tc-egress"));
        assert_eq!(src.as_deref(), Some("web (container, docker)"));
        assert_eq!(dst, None);
    }
}
