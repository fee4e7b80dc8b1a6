//! `Packet` over a tc `__sk_buff`: reads go through `bpf_skb_load_bytes`, which handles
//! non-linear skbs and fails (instead of reading garbage) past the end of the packet.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::TcContext};
use core::{ffi::c_void, mem::MaybeUninit};
use inspector_common::parse::Packet;

pub(crate) struct Skb<'a>(pub(crate) &'a TcContext);

impl Packet for Skb<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let mut buf = MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: the helper writes exactly N bytes into `buf` or fails.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.0.skb.skb.cast::<c_void>(),
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
