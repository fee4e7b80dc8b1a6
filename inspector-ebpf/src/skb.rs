//! `Packet` over a tc `__sk_buff`. Headers are read straight from the linear packet data
//! (bounds-checked against `data_end`, as the verifier demands); a header that lies beyond the
//! linear part, or past the offsets the verifier can track, goes through `bpf_skb_load_bytes`,
//! which copes with non-linear skbs and fails (instead of reading garbage) past the end.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::TcContext};
use core::{ffi::c_void, mem::MaybeUninit};
use inspector_common::parse::Packet;

/// Offsets up to this are read directly; the bound keeps pointer arithmetic verifiable.
const DIRECT_MAX: u32 = 1024;

pub(crate) struct Skb<'a> {
    ctx: &'a TcContext,
    data: usize,
    data_end: usize,
}

impl<'a> Skb<'a> {
    /// `data`/`data_end` as the caller already read them from the context.
    #[inline(always)]
    pub(crate) const fn new(ctx: &'a TcContext, data: usize, data_end: usize) -> Self {
        Self {
            ctx,
            data,
            data_end,
        }
    }
}

impl Packet for Skb<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        if off < DIRECT_MAX {
            let start = self.data + off as usize;
            if start + N <= self.data_end {
                // SAFETY: [start, start + N) lies inside the linear packet data (checked above).
                return Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) });
            }
        }
        let mut buf = MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: the helper writes exactly N bytes into `buf` or fails.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.ctx.skb.skb.cast::<c_void>(),
                off,
                buf.as_mut_ptr().cast::<c_void>(),
                N as u32,
            )
        };
        if ret == 0 {
            // SAFETY: initialised by the helper above.
            Some(unsafe { buf.assume_init() })
        } else {
            None
        }
    }
}
