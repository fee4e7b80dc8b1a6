//! Capture files (`trace -w`): pcapng that Wireshark, tshark and tcpdump open, written with
//! the `pcap-file` crate. One Interface Description Block per (namespace, device), named
//! `netns/ifname`, with nanosecond timestamps; one Enhanced Packet Block per packet per hook,
//! its direction in `epb_flags` and, in its comment, what only the inspector knows: the hook,
//! the workloads at both ends, the Service, backend and NAT. A Section Header Block names
//! the node, its kernel and the inspector. `--pcap` writes classic pcap instead (nanosecond
//! timestamps, no interfaces or comments) for tools that read nothing else.
//!
//! The packet bytes are what the kernel copied into the event: up to the snap length (at
//! most `SNAP_MAX`) from the frame's start (the rest is counted in the original length).
use std::{borrow::Cow, cell::RefCell, collections::HashMap, io::Write, rc::Rc, time::Duration};

use pcap_file::{
    DataLink, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
    },
};

use crate::{
    identity::Endpoint,
    session::{records::Packet, trace::Again},
};

/// Cached comments at most (then the cache starts again).
const COMMENTS_MAX: usize = 8192;

/// The most bytes of a packet the kernel copies into an event.
pub const SNAP_MAX: u32 = inspector_common::flow::SNAP_MAX as u32;

/// What the file's section header says about where it was taken.
pub struct About {
    pub node: String,
    pub kernel: String,
}

impl About {
    /// This node's name and kernel release.
    #[must_use]
    pub fn here() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            node: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
        }
    }
}

/// The file, shared between the crate's writer and [`Capture::flush`] (the crate's pcap
/// writer does not lend its writer out).
struct Shared<W>(Rc<RefCell<W>>);

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

enum Sink<W: Write> {
    Ng(PcapNgWriter<Shared<W>>),
    Classic(PcapWriter<Shared<W>>),
}

/// A capture file being written.
pub struct Capture<W: Write> {
    out: Rc<RefCell<W>>,
    sink: Sink<W>,
    /// (netns inode, ifindex) -> (ifname, interface id), ids in the order first seen (a
    /// file read back has no inodes or ifindexes: its interfaces differ by name only).
    ifaces: HashMap<(u64, u32), Vec<(String, u32)>>,
    next_iface: u32,
    /// Comments of flows written with `write_again`, by their first packet (kept alive
    /// here, so the address is not reused while cached).
    comments: rustc_hash::FxHashMap<*const Packet, (Rc<Packet>, Rc<str>)>,
    /// Bytes kept of each packet (at most `SNAP_MAX`).
    snaplen: u32,
    pub packets: u64,
}

fn err(e: pcap_file::PcapError) -> std::io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        e => std::io::Error::other(e.to_string()),
    }
}

impl<W: Write> Capture<W> {
    /// Starts the file: pcapng (`classic` false) or classic pcap.
    ///
    /// # Errors
    /// The writer fails.
    pub fn new(w: W, classic: bool, snaplen: u32, about: &About) -> std::io::Result<Self> {
        let snaplen = snaplen.clamp(1, SNAP_MAX);
        let out = Rc::new(RefCell::new(w));
        let w = Shared(Rc::clone(&out));
        let sink = if classic {
            Sink::Classic(
                PcapWriter::with_header(
                    w,
                    PcapHeader {
                        snaplen,
                        datalink: DataLink::ETHERNET,
                        ts_resolution: TsResolution::NanoSecond,
                        ..PcapHeader::default()
                    },
                )
                .map_err(err)?,
            )
        } else {
            let shb = SectionHeaderBlock {
                options: vec![
                    SectionHeaderOption::Hardware(Cow::Owned(format!("node {}", about.node))),
                    SectionHeaderOption::OS(Cow::Owned(format!("Linux {}", about.kernel))),
                    SectionHeaderOption::UserApplication(Cow::Owned(format!(
                        "inspector {}",
                        env!("CARGO_PKG_VERSION")
                    ))),
                ],
                ..SectionHeaderBlock::default()
            };
            Sink::Ng(PcapNgWriter::with_section_header(w, shb).map_err(err)?)
        };
        Ok(Self {
            out,
            sink,
            ifaces: HashMap::new(),
            next_iface: 0,
            comments: rustc_hash::FxHashMap::default(),
            snaplen,
            packets: 0,
        })
    }

    /// Writes one packet seen at one hook; the first packet of a device describes it first.
    ///
    /// # Errors
    /// The writer fails.
    pub fn write(&mut self, p: &Packet) -> std::io::Result<()> {
        let comment = comment(p);
        self.block(p, p.time_unix_ns, p.len, &p.bytes, &comment)
    }

    /// Writes another packet of a flow whose first packet at this hook is `first`: its
    /// interface and comment are worked out once (per file, while `first` is in the cache).
    ///
    /// # Errors
    /// The writer fails.
    pub fn write_again(&mut self, first: &Rc<Packet>, a: &Again) -> std::io::Result<()> {
        if self.comments.len() >= COMMENTS_MAX {
            self.comments.clear();
        }
        let key = Rc::as_ptr(first);
        let comment = if let Some((_, c)) = self.comments.get(&key) {
            Rc::clone(c)
        } else {
            let c: Rc<str> = comment(first).into();
            self.comments.insert(key, (Rc::clone(first), Rc::clone(&c)));
            c
        };
        self.block(first, a.time_unix_ns, a.len, &a.bytes, &comment)
    }

    /// The interface `p` was seen on, described in the file the first time.
    fn iface(&mut self, p: &Packet) -> std::io::Result<u32> {
        let Sink::Ng(w) = &mut self.sink else {
            return Ok(0);
        };
        let named = self.ifaces.entry((p.netns, p.ifindex)).or_default();
        if let Some((_, id)) = named.iter().find(|(n, _)| *n == p.ifname) {
            return Ok(*id);
        }
        let id = self.next_iface;
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(format!(
                    "{}/{}",
                    p.netns_name, p.ifname
                ))),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                    "netns {} ({}), ifindex {}",
                    p.netns_name, p.netns, p.ifindex
                ))),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .map_err(err)?;
        named.push((p.ifname.clone(), id));
        self.next_iface += 1;
        Ok(id)
    }

    /// One packet block: `p` says where (interface, direction), the rest what.
    fn block(
        &mut self,
        p: &Packet,
        time_unix_ns: u64,
        len: u32,
        bytes: &[u8],
        comment: &str,
    ) -> std::io::Result<()> {
        let ts = Duration::from_nanos(time_unix_ns);
        let data = &bytes[..bytes.len().min(self.snaplen as usize)];
        let id = self.iface(p)?;
        match &mut self.sink {
            Sink::Classic(w) => {
                w.write_packet(&PcapPacket::new(ts, len, data))
                    .map_err(err)?;
            }
            Sink::Ng(w) => {
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: id,
                    timestamp: ts,
                    original_len: len,
                    data: Cow::Borrowed(data),
                    options: vec![
                        EnhancedPacketOption::Flags(direction_flags(p.direction)),
                        EnhancedPacketOption::Comment(Cow::Borrowed(comment)),
                    ],
                })
                .map_err(err)?;
            }
        }
        self.packets += 1;
        Ok(())
    }

    /// Flushes what was written (each packet, when writing to a pipe).
    ///
    /// # Errors
    /// The writer fails.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.borrow_mut().flush()
    }
}

/// `epb_flags`' direction bits: 01 inbound, 10 outbound.
fn direction_flags(direction: &str) -> u32 {
    match direction {
        "ingress" => 1,
        "egress" => 2,
        _ => 0,
    }
}

fn endpoint(e: Option<&Endpoint>) -> String {
    let Some(e) = e else {
        return "-".to_owned();
    };
    let name = e.name.clone().unwrap_or_else(|| "-".to_owned());
    let about: Vec<String> = [
        e.kind.clone(),
        e.runtime.clone(),
        e.network_mode.as_ref().map(|m| format!("network {m}")),
        e.id.as_ref()
            .map(|i| format!("id {}", i.chars().take(12).collect::<String>())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if about.is_empty() {
        name
    } else {
        format!("{name} ({})", about.join(", "))
    }
}

/// What only the inspector knows about this copy of the packet, in one line.
#[must_use]
pub fn comment(p: &Packet) -> String {
    if let Some(c) = &p.file_comment {
        return c.clone();
    }
    let mut parts = vec![
        format!("hop {}/{} {}", p.netns_name, p.ifname, p.hook),
        format!("src {}", endpoint(p.src_endpoint.as_ref())),
        format!("dst {}", endpoint(p.dst_endpoint.as_ref())),
    ];
    if let Some(s) = &p.service {
        parts.push(format!(
            "service {} -> backend {}{}",
            crate::services::spn(&s.service.namespace, &s.service.name, &s.service.port_name),
            s.backend.endpoint,
            s.backend
                .workload
                .as_ref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        ));
        parts.push(format!("nat {} / {}", s.nat.original, s.nat.reply));
    }
    parts.join("; ")
}
