//! Truncated and malformed packets on a real veth are counted as such by the kernel programs,
//! and still counted in the flow totals (which keep matching the interface counters).
mod support;

use std::os::fd::RawFd;

use support::{Inspector, Netns, counters, json_lines, unique};

/// Sends raw Ethernet frames out of `ifname` from inside `ns` (`AF_PACKET`).
fn inject(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = ifname.to_owned();
    inspector::sys::netns::run_in(&ns.path(), move || {
        // SAFETY: plain socket calls on a descriptor we own and close.
        unsafe {
            let fd: RawFd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let name = std::ffi::CString::new(ifname).unwrap();
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            sll.sll_halen = 6;
            for f in &frames {
                let n = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&raw const sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(
                    n,
                    f.len() as isize,
                    "send: {}",
                    std::io::Error::last_os_error()
                );
            }
            libc::close(fd);
        }
    })
    .expect("enter namespace");
}

fn frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 9];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn truncated_and_malformed_packets_are_counted_as_such() {
    let x = Netns::new(&unique("ax"));
    let y = Netns::new(&unique("ay"));
    x.exec(&[
        "ip", "link", "add", "vx", "type", "veth", "peer", "name", "vy", "netns", &y.name,
    ]);
    x.exec(&["ip", "link", "set", "vx", "up"]);
    y.exec(&["ip", "link", "set", "vy", "up"]);
    let before = (counters(&x)["vx"], counters(&y)["vy"]);
    let insp = Inspector::start(&[
        "flows",
        "-o",
        "json",
        "--duration",
        "300",
        "--netns",
        &x.name,
        "--netns",
        &y.name,
    ]);
    // 3 IPv4 headers cut after 10 bytes, 2 with IHL 3 (impossible), 1 TCP cut after its ports.
    let mut frames = vec![frame(0x0800, &[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6]); 3];
    let mut bad_ihl = vec![
        0x43, 0, 0, 40, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    bad_ihl.extend([0u8; 20]);
    frames.extend(std::iter::repeat_n(frame(0x0800, &bad_ihl), 2));
    let mut cut_tcp = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    cut_tcp.extend([0x1f, 0x90, 0x00, 0x50, 0, 0]);
    frames.push(frame(0x0800, &cut_tcp));
    inject(&x, "vx", frames);
    support::wait_quiet(&[&x, &y], std::time::Duration::from_millis(300));
    let out = insp.interrupt();
    let after = (counters(&x)["vx"], counters(&y)["vy"]);
    let stats = &json_lines(&out.stdout, "stats")[0];
    // Each frame is seen twice: leaving vx, arriving on vy.
    assert_eq!(stats["truncated"].as_u64(), Some(2 * 4), "{stats}");
    assert_eq!(stats["malformed"].as_u64(), Some(2 * 2), "{stats}");
    let flows = json_lines(&out.stdout, "flow");
    let sum = |ifname: &str, dir: &str| -> u64 {
        flows
            .iter()
            .filter(|f| f["ifname"] == ifname && f["direction"] == dir)
            .map(|f| f["packets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sum("vx", "egress"),
        after.0.tx_packets - before.0.tx_packets,
        "every frame counted"
    );
    assert_eq!(sum("vx", "egress"), 6);
    assert_eq!(
        sum("vy", "ingress"),
        after.1.rx_packets - before.1.rx_packets
    );
    let cut = flows
        .iter()
        .find(|f| f["ifname"] == "vx" && f["proto"] == "tcp")
        .unwrap_or_else(|| panic!("cut TCP flow listed: {flows:#?}"));
    assert_eq!(
        (cut["sport"].as_u64(), cut["dport"].as_u64()),
        (Some(8080), Some(80)),
        "ports read before the cut"
    );
    assert_eq!(cut["anomalies"], "truncated");
}
