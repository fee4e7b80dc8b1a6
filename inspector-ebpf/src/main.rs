//! inspector's kernel programs. One file per hook; the packet parser is shared with userspace
//! (`inspector_common::parse`). Every program only observes: its verdict is always "continue".
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod cg_sock_owner;
mod config;
mod fcache;
mod hoptime;
mod klog;
mod kmem;
mod maps;
mod observe;
mod pcap;
mod skb;
mod tc_egress;
mod tc_empty;
mod tc_ingress;
mod tp_global;
mod tp_kfree_skb;
mod tp_stack;
mod wsel;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic; this is never called.
    unsafe { core::hint::unreachable_unchecked() }
}
