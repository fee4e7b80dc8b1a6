//! Links and addresses of the namespace the calling thread is in, read over rtnetlink.
//! Call it from inside `sys::netns::run_in`; the netlink socket lives only for the call.
use std::{fs::File, net::IpAddr, os::fd::AsRawFd, path::Path};

use futures::StreamExt as _;
use futures::TryStreamExt as _;
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::AddressAttribute,
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State},
    nsid::{NsidAttribute, NsidMessage},
};

/// What sort of device a link is, as far as attaching is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Veth,
    Bridge,
    Loopback,
    /// No rtnetlink kind: a physical NIC (or a driver that does not say).
    Device,
    /// Any other virtual kind (vxlan, macvlan, tun, ...), named as the kernel names it.
    Other(String),
}

impl std::fmt::Display for LinkKind {
    /// As tables and JSON write it: veth, bridge, loopback, device, or the kernel's kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Veth => "veth",
            Self::Bridge => "bridge",
            Self::Loopback => "loopback",
            Self::Device => "device",
            Self::Other(s) => s,
        })
    }
}

impl serde::Serialize for LinkKind {
    /// As it is written for people: "veth", "bridge", ..., or the kernel's kind ("vxlan").
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Interface counters as the kernel keeps them (`IFLA_STATS64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// One interface address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Addr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One link in one namespace.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub kind: LinkKind,
    /// ifindex of the bridge (or other controller) this link is a port of.
    pub master: Option<u32>,
    /// For veth: the peer's ifindex, in the namespace `peer_netnsid` names (or this one).
    #[serde(skip)]
    pub peer_ifindex: Option<u32>,
    #[serde(skip)]
    pub peer_netnsid: Option<i32>,
    pub up: bool,
    pub oper_state: String,
    pub mtu: u32,
    pub mac: Option<String>,
    pub addrs: Vec<Addr>,
    pub stats: LinkStats,
}

/// Reads every link (with addresses and counters) of the current namespace.
pub fn list() -> std::io::Result<Vec<Link>> {
    bounded(list_async())
}

/// Every netlink exchange is bounded: a request the kernel never answers (a namespace being
/// torn down, say) must not stall the scan, and with it the whole inspector.
const NETLINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn bounded<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    runtime()?.block_on(async {
        tokio::time::timeout(NETLINK_TIMEOUT, f)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "netlink request timed out")
            })?
    })
}

/// One route of the main table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// "default" or a CIDR.
    pub dst: String,
    pub gateway: Option<IpAddr>,
    /// Output interface (ifindex in the same namespace).
    pub oif: Option<u32>,
    pub prefsrc: Option<IpAddr>,
}

/// Reads the IPv4 and IPv6 routes of the main table of the current namespace.
pub fn routes() -> std::io::Result<Vec<Route>> {
    bounded(async {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        let nl = |e: rtnetlink::Error| std::io::Error::other(e.to_string());
        let (conn, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(conn);
        let mut out = Vec::new();
        for msg in [
            rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let msgs: Vec<_> = handle
                .route()
                .get(msg)
                .execute()
                .try_collect()
                .await
                .map_err(nl)?;
            for m in msgs {
                if m.header.table != 254 {
                    continue; // main table only (not local/broadcast)
                }
                let ip = |a: &RouteAddress| match a {
                    RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
                    RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
                    _ => None,
                };
                let mut r = Route {
                    dst: "default".into(),
                    gateway: None,
                    oif: None,
                    prefsrc: None,
                };
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => {
                            if let Some(d) = ip(d) {
                                r.dst = format!("{d}/{}", m.header.destination_prefix_length);
                            }
                        }
                        RouteAttribute::Gateway(g) => r.gateway = ip(g),
                        RouteAttribute::PrefSource(p) => r.prefsrc = ip(p),
                        RouteAttribute::Oif(o) => r.oif = Some(*o),
                        _ => {}
                    }
                }
                out.push(r);
            }
        }
        drop(handle);
        task.abort();
        Ok(out)
    })
}

/// The nsid the current namespace uses for the namespace at `other`, if one is assigned.
pub fn nsid_of(other: &Path) -> std::io::Result<Option<i32>> {
    let file = File::open(other)?;
    bounded(async move {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(conn);
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(file.as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut out = None;
        let mut responses = handle
            .clone()
            .request(req)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        while let Some(resp) = responses.next().await {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) = resp.payload {
                for a in m.attributes {
                    if let NsidAttribute::Id(id) = a
                        && id >= 0
                    {
                        out = Some(id);
                    }
                }
            }
        }
        drop(handle);
        task.abort();
        Ok(out)
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

async fn list_async() -> std::io::Result<Vec<Link>> {
    let nl = |e: rtnetlink::Error| std::io::Error::other(e.to_string());
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(conn);
    let msgs: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl)?;
    let mut links: Vec<Link> = msgs.into_iter().map(from_message).collect();
    let addrs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl)?;
    for a in addrs {
        let ip = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(ip.to_owned()),
            _ => None,
        });
        let ip = ip.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(ip.to_owned()),
                _ => None,
            })
        });
        if let (Some(ip), Some(l)) = (ip, links.iter_mut().find(|l| l.ifindex == a.header.index)) {
            l.addrs.push(Addr {
                addr: ip,
                prefix: a.header.prefix_len,
            });
        }
    }
    drop(handle);
    task.abort();
    links.sort_by_key(|l| l.ifindex);
    Ok(links)
}

fn from_message(m: LinkMessage) -> Link {
    let mut l = Link {
        ifindex: m.header.index,
        name: String::new(),
        kind: if m.header.flags.contains(LinkFlags::Loopback) {
            LinkKind::Loopback
        } else {
            LinkKind::Device
        },
        master: None,
        peer_ifindex: None,
        peer_netnsid: None,
        up: m.header.flags.contains(LinkFlags::Up),
        oper_state: String::new(),
        mtu: 0,
        mac: None,
        addrs: Vec::new(),
        stats: LinkStats::default(),
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Controller(i) => l.master = Some(i),
            LinkAttribute::Link(i) => l.peer_ifindex = Some(i),
            LinkAttribute::LinkNetNsId(i) => l.peer_netnsid = Some(i),
            LinkAttribute::Mtu(mtu) => l.mtu = mtu,
            LinkAttribute::Address(mac) if mac.len() == 6 => {
                l.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
            LinkAttribute::OperState(s) => state_name(s).clone_into(&mut l.oper_state),
            LinkAttribute::Stats64(s) => {
                l.stats = LinkStats {
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                };
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = match k {
                            InfoKind::Veth => LinkKind::Veth,
                            InfoKind::Bridge => LinkKind::Bridge,
                            other => LinkKind::Other(other.to_string()),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    if l.kind != LinkKind::Veth {
        // IFLA_LINK means "peer" only for veth; for others it is a lower device.
        l.peer_ifindex = None;
        l.peer_netnsid = None;
    }
    l
}

const fn state_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Dormant => "dormant",
        State::Testing => "testing",
        State::NotPresent => "notpresent",
        _ => "unknown",
    }
}
