//! The kernel side of pcap-filter expressions: the layout userspace's translator
//! (`inspector::filter`) and the programs (`inspector-ebpf/src/pcap.rs`) agree on.
//!
//! A program copies the packet's first [`VIEW`] bytes (a VLAN tag the stack holds out of
//! band put back in, as `AF_PACKET` does for tcpdump) into a per-CPU [`Scratch`], then runs
//! the filter with r1 = scratch, r2 = bytes copied, r3 = packet length; the verdict is in r0
//! (0 rejects) when control reaches the instruction after it. The filter is a placeholder
//! of [`SLOTS`] instructions inlined in each program (inline assembly: a subprogram call
//! would cost 32 bytes of stack on Linux 6.1, which the tc programs do not have), starting
//! with [`MARKER`]; userspace overwrites every copy with the expression, compiled by libpcap
//! and translated from classic BPF, before loading.

/// Packet bytes the filter sees: a load past them (or past the packet) fails the filter,
/// as it does in libpcap on a capture cut at this length.
pub const VIEW: usize = 256;

/// eBPF instructions in the placeholder (the translated filter plus `ja +0` padding, which
/// the verifier removes).
pub const SLOTS: usize = 4096;

/// The placeholder's first instruction, `r0 = 0x5ca1ab1e` (as a little-endian word); then
/// `SLOTS - 2` times `ja +0`, then `r0 = 0`.
pub const MARKER: u64 = 0xb7 | 0x5ca1_ab1e << 32;

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
