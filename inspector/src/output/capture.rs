//! Capture files (`trace -w`): pcapng that Wireshark, tshark and tcpdump open, written with
//! the `pcap-file` crate. One Interface Description Block per (namespace, device), named
//! `netns/ifname`, with nanosecond timestamps; one Enhanced Packet Block per packet per hook,
//! its direction in `epb_flags` and, in its comment, what only the inspector knows: the hook,
//! the workloads at both ends, the Service, backend and NAT. A Section Header Block names
//! the node, its kernel and the inspector. `--pcap` writes classic pcap instead (nanosecond
//! timestamps, no interfaces or comments) for tools that read nothing else.
//!
//! The packet bytes are what the kernel copied into the event: up to `SNAP_LEN` bytes from
//! the frame's start (the rest is counted in the original length, as a snap length would).
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

use crate::{identity::Endpoint, session::records::Packet};

/// The most bytes of a packet the kernel copies into an event.
pub const SNAP_LEN: u32 = inspector_common::flow::SNAP_LEN as u32;

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
    /// (netns inode, ifname) -> interface id, in the order first seen.
    ifaces: HashMap<(u64, String), u32>,
    /// Bytes kept of each packet (at most `SNAP_LEN`).
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
        let snaplen = snaplen.clamp(1, SNAP_LEN);
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
            snaplen,
            packets: 0,
        })
    }

    /// Writes one packet seen at one hook; the first packet of a device describes it first.
    ///
    /// # Errors
    /// The writer fails.
    pub fn write(&mut self, p: &Packet) -> std::io::Result<()> {
        let ts = Duration::from_nanos(p.time_unix_ns);
        let data = &p.bytes[..p.bytes.len().min(self.snaplen as usize)];
        match &mut self.sink {
            Sink::Classic(w) => {
                w.write_packet(&PcapPacket::new(ts, p.len, data))
                    .map_err(err)?;
            }
            Sink::Ng(w) => {
                let key = (p.netns, p.ifname.clone());
                let id = if let Some(id) = self.ifaces.get(&key) {
                    *id
                } else {
                    let id = u32::try_from(self.ifaces.len()).unwrap_or(u32::MAX);
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
                    self.ifaces.insert(key, id);
                    id
                };
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: id,
                    timestamp: ts,
                    original_len: p.len,
                    data: Cow::Borrowed(data),
                    options: vec![
                        EnhancedPacketOption::Flags(direction_flags(p.direction)),
                        EnhancedPacketOption::Comment(Cow::Owned(comment(p))),
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
