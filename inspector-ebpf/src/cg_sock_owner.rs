//! `cgroup_skb` (ingress and egress, on the root of the cgroup v2 hierarchy): records which
//! cgroup owns each socket that sends or receives, keyed by the socket's namespace, protocol
//! and local address/port. Flows are then attributed to the container whose processes own the
//! socket, which is the only way to tell apart containers sharing a namespace (Docker's
//! container mode, pods) or host-mode containers in the host namespace. Always allows the
//! packet: this program observes, it never filters.
use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id},
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use inspector_common::{
    SockKey,
    parse::{ETH_P_IP, ETH_P_IPV6},
};

use crate::{
    config::conf,
    maps::{SOCK_SEEN, SOCK_SEEN_SLOTS, SOCKS},
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

// One program per direction: the kernel ties a cgroup_skb program to the attach type it was
// loaded for.
#[cgroup_skb(ingress)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_sock_owner_in(ctx: SkBuffContext) -> i32 {
    let _ = try_sock_owner(&ctx);
    1
}

#[cgroup_skb(egress)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_sock_owner_out(ctx: SkBuffContext) -> i32 {
    let _ = try_sock_owner(&ctx);
    1
}

fn try_sock_owner(ctx: &SkBuffContext) -> Option<()> {
    // A socket's owner, namespace and local end do not change once it sends or receives:
    // recognise sockets already recorded by their cookie in a small per-CPU direct-mapped
    // cache, so a busy socket costs one helper call and one array lookup per packet instead
    // of three kernel reads and a shared-map lookup.
    // SAFETY: plain helper call on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let slot = SOCK_SEEN.get_ptr_mut((cookie % u64::from(SOCK_SEEN_SLOTS)) as u32)?;
    // SAFETY: this CPU's slot; cgroup_skb programs do not preempt each other on one CPU.
    if cookie != 0 && unsafe { *slot } == cookie {
        return Some(());
    }
    record(ctx)?;
    // SAFETY: as above.
    unsafe { *slot = cookie };
    Some(())
}

fn record(ctx: &SkBuffContext) -> Option<()> {
    let skb = &ctx.skb;
    let family = skb.family();
    let mut key = SockKey {
        addr: [0; 16],
        netns: 0,
        port: skb.local_port() as u16,
        proto: 0,
        family: 0,
    };
    let raw = skb.skb;
    // Each context field is read with its own volatile load: the verifier only accepts a
    // context access at a constant offset from the context pointer, and LLVM would otherwise
    // merge the two branches into one loop over a computed pointer.
    // SAFETY: reads of `__sk_buff` fields the kernel allows in cgroup_skb programs.
    let ctx_u32 = |p: *const u32| unsafe { core::ptr::read_volatile(p) };
    match family {
        AF_INET => {
            key.family = 4;
            // SAFETY: field address inside the context.
            let a = ctx_u32(unsafe { &raw const (*raw).local_ip4 });
            key.addr[..4].copy_from_slice(&a.to_ne_bytes());
        }
        AF_INET6 => {
            key.family = 6;
            // SAFETY: field addresses inside the context.
            let w = unsafe {
                [
                    ctx_u32(&raw const (*raw).local_ip6[0]),
                    ctx_u32(&raw const (*raw).local_ip6[1]),
                    ctx_u32(&raw const (*raw).local_ip6[2]),
                    ctx_u32(&raw const (*raw).local_ip6[3]),
                ]
            };
            key.addr[0..4].copy_from_slice(&w[0].to_ne_bytes());
            key.addr[4..8].copy_from_slice(&w[1].to_ne_bytes());
            key.addr[8..12].copy_from_slice(&w[2].to_ne_bytes());
            key.addr[12..16].copy_from_slice(&w[3].to_ne_bytes());
        }
        _ => return None,
    }
    // The protocol comes from the packet (it starts at its network header here), whose
    // version is not the socket's family: a dual-stack IPv6 socket carries IPv4 packets.
    key.proto = match skb.protocol() {
        p if p == u32::from(ETH_P_IP.to_be()) => ctx.load::<u8>(9).ok()?,
        p if p == u32::from(ETH_P_IPV6.to_be()) => ctx.load::<u8>(6).ok()?,
        _ => return None,
    };
    key.netns = sock_netns(ctx)?;
    // SAFETY: plain helper call on the program's own context.
    let cgroup = unsafe { bpf_skb_cgroup_id(skb.skb) };
    // Most packets belong to a socket already recorded: read before writing, so the shared
    // map's cache line is only dirtied when something changed.
    if SOCKS.get_ptr(key).is_some_and(|v| {
        // SAFETY: a value pointer the map just returned.
        unsafe { *v == cgroup }
    }) {
        return Some(());
    }
    SOCKS.insert(key, cgroup, 0).ok()
}

/// Inode of the socket's namespace: `skb->sk->__sk_common.skc_net.net->ns.inum`, with
/// offsets from the kernel's BTF.
#[inline(always)]
fn sock_netns(ctx: &SkBuffContext) -> Option<u32> {
    let skb = ctx.skb.skb.cast::<u8>();
    let (off_sk, off_net, off_inum) = (conf!(off_skb_sk), conf!(off_sk_net), conf!(off_net_inum));
    // SAFETY: bpf_probe_read_kernel never faults; a bad pointer just yields an error.
    unsafe {
        let sk: u64 = bpf_probe_read_kernel(skb.add(off_sk as usize) as u64 as *const u64).ok()?;
        if sk == 0 {
            return None;
        }
        let net: u64 = bpf_probe_read_kernel((sk + u64::from(off_net)) as *const u64).ok()?;
        if net == 0 {
            return None;
        }
        bpf_probe_read_kernel((net + u64::from(off_inum)) as *const u32).ok()
    }
}
