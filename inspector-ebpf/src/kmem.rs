//! Reading a packet and its device through a kernel `sk_buff` pointer (tracepoints), with
//! the offsets userspace found in the kernel's BTF.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use inspector_common::parse::Packet;

/// Packet bytes in kernel memory, from the network header to `skb->tail`.
pub(crate) struct KernelPacket {
    pub(crate) base: u64,
    pub(crate) len: u32,
}

impl Packet for KernelPacket {
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        if u64::from(off) + N as u64 > u64::from(self.len) {
            return None;
        }
        // SAFETY: bpf_probe_read_kernel never faults; bounds checked against skb->tail above.
        unsafe { bpf_probe_read_kernel((self.base + u64::from(off)) as *const [u8; N]).ok() }
    }
}

/// A `T` at a kernel address (None for a null address or an unreadable one).
#[inline(always)]
pub(crate) fn read<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel never faults; a bad address yields an error.
    unsafe { bpf_probe_read_kernel(addr as *const T).ok() }
}

/// A field of a kernel object reached from a `tp_btf` program's arguments: a plain load,
/// which the verifier checks against the kernel's BTF (a fault reads as zero).
#[inline(always)]
pub(crate) fn field<T: Copy>(base: *const u8, off: u32) -> T {
    // SAFETY: `base` is a BTF-typed kernel pointer and `off` a field offset from the same
    // BTF; the verifier refuses the program otherwise, and the kernel fixes up a fault.
    unsafe { core::ptr::read_volatile(base.add(off as usize).cast::<T>()) }
}
