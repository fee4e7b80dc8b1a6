//! The workloads, one vocabulary for `bench` and `bench overhead`: netperf's four classic
//! tests and a small-packet UDP flood. Names are what the flags take and JSON writes.
use serde::{Deserialize, Serialize};

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadKind {
    /// One TCP connection, 64-byte request, 64-byte response, one at a time (`TCP_RR`).
    Rr,
    /// A new TCP connection per transaction (`TCP_CRR`).
    Crr,
    /// One TCP connection, 128 KiB writes as fast as they go (`TCP_STREAM`).
    Stream,
    /// 64-byte UDP request and response, one at a time (`UDP_RR`).
    UdpRr,
    /// 64-byte UDP datagrams as fast as one sender pushes them (sendmmsg), counted received.
    UdpFlood,
    /// The same flood as a user runs it: plain `iperf3 -u -l 64 -b 0`, unpinned, default
    /// socket buffers; counted received.
    Iperf3Udp,
    /// The flood to a port nobody listens on: every datagram is dropped by the receiving
    /// stack (`NO_SOCKET`), counted by the kernel's own `Udp NoPorts`. A drop storm.
    UdpDrops,
}

impl LoadKind {
    /// The netperf-style tests `bench` runs over every mode.
    pub const TESTS: [Self; 4] = [Self::Rr, Self::Crr, Self::Stream, Self::UdpRr];
    /// Everything, in the order names are listed.
    pub const ALL: [Self; 7] = [
        Self::Rr,
        Self::Crr,
        Self::Stream,
        Self::UdpRr,
        Self::UdpFlood,
        Self::Iperf3Udp,
        Self::UdpDrops,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Crr => "crr",
            Self::Stream => "stream",
            Self::UdpRr => "udp-rr",
            Self::UdpFlood => "udp-flood",
            Self::Iperf3Udp => "iperf3-udp",
            Self::UdpDrops => "udp-drops",
        }
    }

    /// Unit of a run's rate.
    #[must_use]
    pub const fn unit(self) -> &'static str {
        match self {
            Self::Rr | Self::UdpRr => "trans/s",
            Self::Crr => "conn/s",
            Self::Stream => "Gbit/s",
            Self::UdpFlood | Self::Iperf3Udp | Self::UdpDrops => "pkt/s",
        }
    }

    /// What one operation is (for CPU per operation).
    #[must_use]
    pub const fn op(self) -> &'static str {
        match self {
            Self::Rr | Self::UdpRr => "transaction",
            Self::Crr => "connection",
            Self::Stream => "MiB",
            Self::UdpFlood | Self::Iperf3Udp | Self::UdpDrops => "datagram",
        }
    }

    /// The server's port (the same on the host side of published ports and on Services).
    #[must_use]
    pub const fn port(self) -> u16 {
        match self {
            Self::UdpFlood => 9100,
            Self::Rr => 9101,
            Self::Stream => 9102,
            Self::Crr => 9103,
            Self::UdpRr => 9104,
            Self::Iperf3Udp => 9105,
            Self::UdpDrops => 9106,
        }
    }

    #[must_use]
    pub const fn proto(self) -> &'static str {
        match self {
            Self::UdpRr | Self::UdpFlood | Self::Iperf3Udp | Self::UdpDrops => "udp",
            _ => "tcp",
        }
    }

    /// Packets per operation, for a per-packet cost (request and response per transaction);
    /// None where the cost is not per packet (stream, crr).
    #[must_use]
    pub const fn packets_per_op(self) -> Option<f64> {
        match self {
            Self::UdpFlood | Self::Iperf3Udp | Self::UdpDrops => Some(1.0),
            Self::Rr | Self::UdpRr => Some(2.0),
            Self::Stream | Self::Crr => None,
        }
    }

    /// A workload by name. Returns it and, for a name of the previous release (`udp`,
    /// `bulk`), the note to show.
    ///
    /// # Errors
    /// An unknown name, in one line listing the known ones.
    pub fn parse(s: &str) -> Result<(Self, Option<String>), super::BenchError> {
        let old = match s {
            "udp" => Some(Self::UdpFlood),
            "bulk" => Some(Self::Stream),
            _ => None,
        };
        if let Some(w) = old {
            return Ok((
                w,
                Some(format!(
                    "workload '{s}' is now called '{}' (the old name goes in the next release)",
                    w.name()
                )),
            ));
        }
        Self::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .map(|w| (w, None))
            .ok_or_else(|| {
                super::BenchError::Input(format!(
                    "unknown workload '{s}': use rr, crr, stream, udp-rr, udp-flood, iperf3-udp or udp-drops"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_old_names_say_so() {
        for w in LoadKind::ALL {
            assert_eq!(LoadKind::parse(w.name()).unwrap(), (w, None));
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.name()));
        }
        let (w, note) = LoadKind::parse("bulk").unwrap();
        assert_eq!(w, LoadKind::Stream);
        assert!(note.unwrap().contains("now called 'stream'"));
        assert!(
            LoadKind::parse("ping")
                .unwrap_err()
                .to_string()
                .contains("unknown workload 'ping'")
        );
    }
}
