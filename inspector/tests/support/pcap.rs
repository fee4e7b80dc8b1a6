//! Capture files in tests: tcpdump run as the oracle, and the frames of pcap and pcapng
//! files read back (with pcap-file, an implementation independent of how they were written).
use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

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

/// One captured frame: its bytes as kept and its length on the wire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Frame {
    pub data: Vec<u8>,
    pub len: u32,
}

/// A packet of a pcapng file with what the inspector says about it.
#[derive(Clone, Debug)]
pub struct NgPacket {
    pub iface: String,
    pub frame: Frame,
    pub comment: Option<String>,
    /// `epb_flags`' direction: 1 inbound, 2 outbound.
    pub flags: Option<u32>,
}

/// tcpdump on `ns`'s `iface` with `args` (e.g. `-s 128`), writing `file`, ready (its file
/// header written and its socket bound) when this returns.
pub fn tcpdump(ns: &str, iface: &str, args: &[&str], file: &Path) -> Child {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-U",
            "--immediate-mode",
        ])
        .args(args)
        .arg("-w")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(file).map_or(0, |m| m.len()) < 24 {
        assert!(Instant::now() < deadline, "tcpdump did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its file exists before the socket is bound everywhere: a moment more.
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// SIGINT, then wait.
pub fn stop(mut c: Child) {
    // SAFETY: plain libc call on our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let _ = c.wait();
}

/// Stops tcpdump once it has written all it received: it can lag the wire by hundreds of
/// milliseconds, and what it has not written when stopped is lost. Its file must not have
/// grown for half a second (bounded).
pub fn stop_tcpdump(c: Child, file: &Path) {
    let size = || std::fs::metadata(file).map_or(0, |m| m.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut since) = (size(), Instant::now());
    while since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = size();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    stop(c);
}

/// The frames of a classic pcap file (raw packets: pcap-file 2.0's checked reader refuses a
/// truncated packet, which tcpdump -s writes, as it should).
pub fn pcap_frames(bytes: &[u8]) -> Vec<Frame> {
    let mut r = PcapReader::new(bytes).expect("classic pcap");
    let mut out = Vec::new();
    while let Some(p) = r.next_raw_packet() {
        let p = p.expect("packet");
        out.push(Frame {
            data: p.data.to_vec(),
            len: p.orig_len,
        });
    }
    out
}

/// The packets of a pcapng file, each with its interface's name.
pub fn pcapng_packets(bytes: &[u8]) -> Vec<NgPacket> {
    let mut r = PcapNgReader::new(bytes).expect("pcapng");
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        match b.expect("block") {
            Block::InterfaceDescription(i) => {
                let name = i.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                });
                names.push(name.expect("if_name"));
            }
            Block::EnhancedPacket(p) => out.push(NgPacket {
                iface: names[p.interface_id as usize].clone(),
                frame: Frame {
                    data: p.data.to_vec(),
                    len: p.original_len,
                },
                comment: p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                }),
                flags: p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                }),
            }),
            _ => {}
        }
    }
    out
}

/// Frames per interface.
pub fn by_iface(packets: &[NgPacket]) -> HashMap<String, Vec<Frame>> {
    let mut m: HashMap<String, Vec<Frame>> = HashMap::new();
    for p in packets {
        m.entry(p.iface.clone()).or_default().push(p.frame.clone());
    }
    m
}
