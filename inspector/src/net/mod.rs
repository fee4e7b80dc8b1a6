//! Network values every layer speaks: address networks ([`Cidr`], the one parser), protocols
//! of records ([`Proto`]), `ip:port` text, and the rule that traffic may only go to
//! 198.18.0.0/15 or loopback.
//!
//! The bottom layer, beside `sys`: it imports nothing of the crate.
mod cidr;
pub mod nl;
mod proto;

use std::net::IpAddr;

pub use cidr::{Cidr, CidrError};
pub use proto::{Proto, UnknownProto};

/// 198.18.0.0/15, the benchmarking range (RFC 2544): the only addresses labs, tests and
/// benchmarks use, never routed anywhere real.
#[must_use]
pub fn in_benchmark_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 198 && a.octets()[1] & 0xfe == 18,
        IpAddr::V6(_) => false,
    }
}

/// Refuses any destination outside the benchmarking range and loopback.
pub fn check_traffic_addr(ip: IpAddr) -> std::io::Result<()> {
    if ip.is_loopback() || in_benchmark_range(ip) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "refusing to send traffic to {ip}: only 198.18.0.0/15 and loopback"
        )))
    }
}

/// `198.18.0.2:41234`, `[fd00::1]:80`, `198.18.0.2` (no port) or `-` (no address).
#[must_use]
pub fn endpoint(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match (ip, port) {
        (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.to_string(),
        (None, _) => "-".into(),
    }
}

/// Splits "host:port" at its last ':' when what follows is a port number.
#[must_use]
pub fn split_port(s: &str) -> (&str, Option<u16>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok())
        }
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_benchmarking_range_and_loopback_take_traffic() {
        for ok in ["198.18.0.1", "198.19.255.254", "127.0.0.1", "::1"] {
            check_traffic_addr(ok.parse().unwrap()).unwrap();
        }
        for bad in ["198.20.0.1", "10.0.0.1", "8.8.8.8", "fd00::1"] {
            let e = check_traffic_addr(bad.parse().unwrap()).unwrap_err();
            assert!(e.to_string().contains("only 198.18.0.0/15"), "{e}");
        }
    }

    #[test]
    fn endpoints_and_ports() {
        assert_eq!(
            endpoint(Some("198.18.0.2".parse().unwrap()), Some(80)),
            "198.18.0.2:80"
        );
        assert_eq!(
            endpoint(Some("fd00::1".parse().unwrap()), Some(80)),
            "[fd00::1]:80"
        );
        assert_eq!(endpoint(None, Some(80)), "-");
        assert_eq!(split_port("shop/web:8080"), ("shop/web", Some(8080)));
        assert_eq!(split_port("shop/web"), ("shop/web", None));
        assert_eq!(split_port("[::1]:x"), ("[::1]:x", None));
    }
}
