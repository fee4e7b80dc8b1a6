//! `iperf3-udp`: the flood as a user measures it - plain `iperf3 -u -l 64 -b 0`, unpinned,
//! default socket buffers - next to the built-in flood (pinned, `sendmmsg`, a 32 MiB receive
//! buffer). The rate is what the receiver got (`packets - lost_packets` over `seconds`, from
//! the client's JSON report, which carries the server's counts). Both run in their
//! namespaces through `ip netns exec`-style entry; the server takes one test and exits.
use std::{
    io::{self, BufRead as _, BufReader},
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::{Ends, Run, Window};
use crate::{bench::LoadKind, sys::netns::command_in};

/// The server's "listening" line, waited for at most this long.
const START_WITHIN: Duration = Duration::from_secs(5);

fn parse(json: &str) -> io::Result<(f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("iperf3 JSON: {e}")))?;
    if let Some(e) = v["error"].as_str() {
        return Err(io::Error::other(format!("iperf3: {e}")));
    }
    let sum = &v["end"]["sum"];
    let (Some(sent), Some(lost), Some(secs)) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "iperf3 JSON without end.sum packets, lost_packets and seconds",
        ));
    };
    Ok(((sent - lost).max(0.0), secs))
}

/// One run of `iperf3 -u -l 64 -b 0` for the window's duration (its warm-up is iperf3's own
/// start, not measured).
pub(super) fn udp(ends: &Ends, w: Window, stop: &AtomicBool) -> io::Result<Run> {
    let port = LoadKind::Iperf3Udp.port().to_string();
    let target_port = (LoadKind::Iperf3Udp.port() + ends.port_offset).to_string();
    let mut server = command_in(&ends.server_ns, "iperf3")?
        .args([
            "-s",
            "-1",
            "--forceflush",
            "-p",
            &port,
            "-B",
            &ends.bind.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("starting iperf3 (run `cargo xtask setup`): {e}"),
            )
        })?;
    let reap = |mut c: std::process::Child| {
        let _ = c.kill();
        let _ = c.wait();
    };
    let out = server.stdout.take();
    let mut lines = BufReader::new(out.ok_or_else(|| io::Error::other("iperf3 without stdout"))?);
    let t0 = Instant::now();
    let mut line = String::new();
    while !line.contains("Server listening") {
        line.clear();
        if lines.read_line(&mut line)? == 0 || t0.elapsed() > START_WITHIN {
            reap(server);
            return Err(io::Error::other("the iperf3 server did not start"));
        }
    }
    std::thread::spawn(move || for _ in lines.lines() {});
    if stop.load(Ordering::Relaxed) {
        reap(server);
        return Err(io::Error::other("interrupted"));
    }
    let secs = w.dur.as_secs_f64().max(1.0).round().to_string();
    let client = command_in(&ends.client_ns, "iperf3")?
        .args([
            "-c",
            &ends.target.to_string(),
            "-p",
            &target_port,
            "-u",
            "-l",
            "64",
            "-b",
            "0",
        ])
        .args(["-t", &secs, "-J"])
        .stderr(Stdio::null())
        .output();
    reap(server);
    let client = client?;
    let (received, secs) = parse(&String::from_utf8_lossy(&client.stdout))?;
    Ok(Run {
        rate: received / secs.max(1e-9),
        ops: received,
        p50_us: None,
        p99_us: None,
        connect_p50_us: None,
        connect_p99_us: None,
        cpu_us_per_op: f64::NAN,
        errors: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_what_the_receiver_got() {
        let json = r#"{"end":{"sum":{"seconds":2.0,"packets":1000,"lost_packets":250}}}"#;
        assert_eq!(parse(json).unwrap(), (750.0, 2.0));
        assert!(parse(r#"{"error":"unable to connect"}"#).is_err());
        assert!(parse("{}").is_err());
    }
}
