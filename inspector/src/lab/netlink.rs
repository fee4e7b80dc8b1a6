//! Synchronous rtnetlink operations on the namespace of the calling thread (links, addresses,
//! routes), used to build labs. Run inside `sys::netns::run_in` to act on another
//! namespace. No `ip` subprocess anywhere.
use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::RawFd,
};

use futures::TryStreamExt as _;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// A netlink connection in the current namespace with its own small runtime.
pub struct Nl {
    rt: tokio::runtime::Runtime,
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

fn err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl Nl {
    pub fn new() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (handle, task) = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            Ok::<_, io::Error>((handle, tokio::spawn(conn)))
        })?;
        Ok(Self { rt, handle, task })
    }

    /// ifindex of `name`.
    pub fn index(&self, name: &str) -> io::Result<u32> {
        self.rt.block_on(async {
            let mut req = self
                .handle
                .link()
                .get()
                .match_name(name.to_owned())
                .execute();
            match req.try_next().await {
                Ok(Some(m)) => Ok(m.header.index),
                Ok(None) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no link {name}"),
                )),
                Err(e) => Err(err(&format!("looking up link {name}"), e)),
            }
        })
    }

    /// Creates a veth pair; if `peer_ns` is given, moves the peer into that namespace.
    pub fn veth(&self, name: &str, peer: &str, peer_ns: Option<RawFd>) -> io::Result<()> {
        self.rt.block_on(async {
            self.handle
                .link()
                .add(LinkVeth::new(name, peer).build())
                .execute()
                .await
                .map_err(|e| err(&format!("creating veth {name}/{peer}"), e))?;
            if let Some(fd) = peer_ns {
                self.handle
                    .link()
                    .set(LinkUnspec::new_with_name(peer).setns_by_fd(fd).build())
                    .execute()
                    .await
                    .map_err(|e| err(&format!("moving {peer} to its namespace"), e))?;
            }
            Ok(())
        })
    }

    /// Deletes a link (a veth pair goes with either end).
    pub fn delete(&self, name: &str) -> io::Result<()> {
        let idx = self.index(name)?;
        self.rt.block_on(async {
            self.handle
                .link()
                .del(idx)
                .execute()
                .await
                .map_err(|e| err(&format!("deleting {name}"), e))
        })
    }

    pub fn bridge(&self, name: &str) -> io::Result<()> {
        self.rt.block_on(async {
            self.handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
                .map_err(|e| err(&format!("creating bridge {name}"), e))
        })
    }

    /// Creates a dummy link (down, as kube-proxy leaves `kube-ipvs0`).
    pub fn dummy(&self, name: &str) -> io::Result<()> {
        self.rt.block_on(async {
            self.handle
                .link()
                .add(rtnetlink::LinkDummy::new(name).build())
                .execute()
                .await
                .map_err(|e| err(&format!("creating dummy {name}"), e))
        })
    }

    pub fn set_master(&self, name: &str, master: &str) -> io::Result<()> {
        let m = self.index(master)?;
        self.rt.block_on(async {
            self.handle
                .link()
                .set(LinkUnspec::new_with_name(name).controller(m).build())
                .execute()
                .await
                .map_err(|e| err(&format!("adding {name} to {master}"), e))
        })
    }

    pub fn up(&self, name: &str) -> io::Result<()> {
        self.rt.block_on(async {
            self.handle
                .link()
                .set(LinkUnspec::new_with_name(name).up().build())
                .execute()
                .await
                .map_err(|e| err(&format!("setting {name} up"), e))
        })
    }

    pub fn add_addr(&self, name: &str, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let idx = self.index(name)?;
        self.rt.block_on(async {
            self.handle
                .address()
                .add(idx, addr, prefix)
                .execute()
                .await
                .map_err(|e| err(&format!("adding {addr}/{prefix} to {name}"), e))
        })
    }

    /// Adds an IPv4 route to `dst/prefix` (0.0.0.0/0 = default) via `gw`.
    pub fn route_v4(&self, dst: Ipv4Addr, prefix: u8, gw: Ipv4Addr) -> io::Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, prefix)
            .gateway(gw)
            .build();
        self.add_route(msg, &format!("adding route {dst}/{prefix} via {gw}"))
    }

    fn add_route(
        &self,
        msg: rtnetlink::packet_route::route::RouteMessage,
        what: &str,
    ) -> io::Result<()> {
        self.rt.block_on(async {
            self.handle
                .route()
                .add(msg)
                .execute()
                .await
                .map_err(|e| err(what, e))
        })
    }
}

impl Nl {
    /// Adds an IPv4 route to `dst/prefix` out of device `dev` (no gateway).
    pub fn route_dev_v4(&self, dst: Ipv4Addr, prefix: u8, dev: &str) -> io::Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, prefix)
            .output_interface(self.index(dev)?)
            .build();
        self.add_route(msg, &format!("adding route {dst}/{prefix} dev {dev}"))
    }
}

impl Drop for Nl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes a sysctl of the current namespace (e.g. "`net/ipv4/ip_forward`").
pub fn sysctl(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("setting sysctl {key}={value}: {e}")))
}
