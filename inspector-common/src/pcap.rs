//! The kernel side of pcap-filter expressions: the layout userspace's translator
//! (`inspector::filter`) and the programs (`inspector-ebpf/src/pcap.rs`) agree on.
//!
//! A program copies the packet's first [`VIEW`] bytes (a VLAN tag the stack holds out of
//! band put back in, as `AF_PACKET` does for tcpdump) into a per-CPU [`Scratch`], then calls
//! the filter subprogram with (scratch, bytes copied, packet length). The subprogram is a
//! placeholder of [`SLOTS`] instructions in the object; userspace overwrites it with the
//! expression, compiled by libpcap and translated from classic BPF, before loading.

/// Packet bytes the filter sees: a load past them (or past the packet) fails the filter,
/// as it does in libpcap on a capture cut at this length.
pub const VIEW: usize = 256;

/// eBPF instructions in the placeholder (the translated filter plus `ja +0` padding, which
/// the verifier removes).
pub const SLOTS: usize = 4096;

/// Name (a substring of the symbol) of the placeholder subprogram.
pub const SYMBOL: &str = "insp_pcap_filter";

/// Per-CPU working memory of the filter: the packet view and classic BPF's 16 scratch words.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    pub buf: [u8; VIEW],
    pub mem: [u32; 16],
}

/// Offset of `mem` in [`Scratch`].
pub const MEM_OFF: usize = VIEW;
const _: () = assert!(core::mem::offset_of!(Scratch, mem) == MEM_OFF);
