//! `bench capture`: writing a capture file at the small-packet flood's rate, the inspector
//! (`trace -w`, pcapng with a comment per packet) and tcpdump (`-w`, classic pcap, `-s 128`)
//! side by side with no observer, interleaved. Both capture the same two interfaces of the
//! flood's path: the server's host-side veth and its eth0, so each datagram is two events.
//!
//! Per run: the flood's rate (kept against no observer); the packets the kernel counted on
//! the two interfaces meanwhile (`IFLA_STATS64`, rx + tx, read after the observer is ready
//! and before it stops); the packets in the files written (read back with pcap-file); the
//! difference is the loss, exact. Bytes written per second, and what each says it lost
//! (`events_lost`; tcpdump's "dropped by kernel").
use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    BenchError, LoadKind, Spread, loadgen,
    overhead::{CPUS, ends_and_hops},
};
use crate::{
    lab::{LabSpec, spec::BENCH_OVERHEAD_SPEC},
    sys::{process::Children, signals::StopFlag},
};

/// Who writes the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Writer {
    None,
    Inspector,
    Tcpdump,
}

impl Writer {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Inspector => "inspector",
            Self::Tcpdump => "tcpdump",
        }
    }
}

pub struct Options {
    pub repeat: usize,
    pub run_secs: f64,
    pub stop: StopFlag,
    /// `-s` for both writers; `None`: each one's default (whole packets).
    pub snaplen: Option<u32>,
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureSample {
    pub repetition: usize,
    pub writer: Writer,
    /// The flood's datagrams per second at the server.
    pub rate: f64,
    /// Packets the kernel counted on the captured interfaces while the writer ran.
    pub counted: u64,
    /// Packets in the files.
    pub written: u64,
    /// counted - written (negative: the files hold packets from outside the window).
    pub lost: i64,
    /// What the writer itself says it lost.
    pub says_lost: Option<u64>,
    pub bytes: u64,
    pub bytes_per_sec: f64,
    pub events_per_sec: f64,
}

/// Medians per writer.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureSummary {
    pub writer: Writer,
    pub runs: usize,
    pub rate: f64,
    pub rate_min: f64,
    pub rate_max: f64,
    /// rate / no-observer rate.
    pub ratio: f64,
    pub events_per_sec: f64,
    /// Lost packets, summed over the runs, and the share of the counted ones.
    pub lost: i64,
    pub lost_share: f64,
    pub bytes_per_sec: f64,
}

/// rx + tx packets of `ifname` in the namespace at `ns`.
fn packets(ns: &Path, ifname: &str) -> Result<u64, BenchError> {
    let links = crate::sys::netns::run_in(ns, crate::topology::links::list)
        .and_then(|r| r)
        .map_err(BenchError::io(format!("reading links in {}", ns.display())))?;
    links
        .iter()
        .find(|l| l.name == ifname)
        .map(|l| l.stats.rx_packets + l.stats.tx_packets)
        .ok_or_else(|| BenchError::Observer(format!("no {ifname} in {}", ns.display())))
}

/// A started writer: its processes and files, and where its stderr goes.
struct Running {
    children: Children,
    files: Vec<PathBuf>,
    stderr: Vec<PathBuf>,
}

fn start(
    w: Writer,
    dir: &Path,
    netns: &[String],
    hops: &[(PathBuf, String)],
    snaplen: Option<u32>,
) -> Result<Running, BenchError> {
    let mut r = Running {
        children: Children::default(),
        files: Vec::new(),
        stderr: Vec::new(),
    };
    match w {
        Writer::None => {}
        Writer::Inspector => {
            let file = dir.join("inspector.pcapng");
            let err = dir.join("inspector.err");
            let mut args: Vec<String> = ["trace", "-q", "--no-drops", "-w"]
                .map(String::from)
                .to_vec();
            args.push(file.display().to_string());
            for n in netns {
                args.extend(["--netns".to_owned(), n.clone()]);
            }
            for (_, ifname) in hops {
                args.extend(["-i".to_owned(), ifname.clone()]);
            }
            if let Some(n) = snaplen {
                args.extend(["-s".to_owned(), n.to_string()]);
            }
            let e =
                std::fs::File::create(&err).map_err(BenchError::io("creating a stderr file"))?;
            r.children =
                super::overhead::observer::start_inspector(&args, Stdio::null(), e.into())?;
            r.files.push(file);
            r.stderr.push(err);
        }
        Writer::Tcpdump => {
            for (i, (ns, ifname)) in hops.iter().enumerate() {
                let file = dir.join(format!("tcpdump{i}.pcap"));
                let err = dir.join(format!("tcpdump{i}.err"));
                let child = crate::sys::netns::command_in(ns, "tcpdump")
                    .map_err(BenchError::io(format!("entering {}", ns.display())))?
                    .args(["-i", ifname, "-n", "-s"])
                    .arg(snaplen.map_or_else(|| "0".to_owned(), |n| n.to_string()))
                    .arg("-w")
                    .arg(&file)
                    .stdout(Stdio::null())
                    .stderr(
                        std::fs::File::create(&err)
                            .map_err(BenchError::io("creating a stderr file"))?,
                    )
                    .spawn()
                    .map_err(BenchError::io("starting tcpdump (run `cargo xtask setup`)"))?;
                r.children.0.push(child);
                r.files.push(file);
                r.stderr.push(err.clone());
                // Listening once it says so.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !std::fs::read_to_string(&err)
                    .unwrap_or_default()
                    .contains("listening on")
                {
                    if Instant::now() > deadline {
                        return Err(BenchError::Observer(format!(
                            "tcpdump on {ifname} did not start"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    Ok(r)
}

/// Packets in a pcapng or pcap file.
fn count(path: &Path) -> Result<u64, BenchError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(BenchError::io(format!("reading {}", path.display())))?;
    let bad = |e: pcap_file::PcapError| BenchError::Observer(format!("{}: {e}", path.display()));
    let mut n = 0;
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).map_err(bad)?;
        while let Some(b) = r.next_raw_block() {
            if b.map_err(bad)?.type_ == 6 {
                n += 1;
            }
        }
    } else {
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).map_err(bad)?;
        while let Some(p) = r.next_raw_packet() {
            p.map_err(bad)?;
            n += 1;
        }
    }
    Ok(n)
}

/// What a writer's stderr says it lost.
fn says_lost(w: Writer, stderr: &[PathBuf]) -> Option<u64> {
    let texts = stderr
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default());
    match w {
        Writer::None => None,
        Writer::Inspector => texts
            .filter_map(|t| {
                t.split_whitespace()
                    .find_map(|w| w.strip_prefix("events_lost=")?.parse::<u64>().ok())
            })
            .reduce(|a, b| a + b),
        Writer::Tcpdump => texts
            .filter_map(|t| {
                t.lines()
                    .find(|l| l.contains("dropped by kernel"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            })
            .reduce(|a, b| a + b),
    }
}

/// Runs the benchmark; `progress` gets every measurement.
pub fn run(
    opts: &Options,
    mut progress: impl FnMut(&CaptureSample),
) -> Result<(Vec<CaptureSample>, Vec<CaptureSummary>), BenchError> {
    let plan = LabSpec::embedded(BENCH_OVERHEAD_SPEC).plan()?;
    crate::lab::remove_stale(&plan.name);
    let lab = crate::lab::LabGuard(vec![crate::lab::up(&plan)?]);
    let (ends, all_hops) = ends_and_hops(&plan)?;
    // The server's host-side veth and its eth0.
    let hops: Vec<(PathBuf, String)> = all_hops[all_hops.len() - 2..].to_vec();
    let netns: Vec<String> = {
        let mut v: Vec<String> = hops.iter().map(|(p, _)| p.display().to_string()).collect();
        v.dedup();
        v
    };
    crate::traffic::ping(
        &ends.client_ns,
        plan.workload("srv")?.addr.unwrap_or(plan.gateway),
        2,
        Duration::from_secs(2),
    )
    .map_err(BenchError::io("priming the lab"))?;
    let dir = std::env::temp_dir().join(format!("inspector-bench-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(BenchError::io("creating the capture directory"))?;
    let writers = [Writer::None, Writer::Inspector, Writer::Tcpdump];
    let mut samples = Vec::new();
    let result = (|| {
        for rep in 0..opts.repeat {
            let mut order = writers;
            order.rotate_left(rep % writers.len());
            for w in order {
                if opts.stop.raised() {
                    return Err(BenchError::Interrupted);
                }
                let mut running = start(w, &dir, &netns, &hops, opts.snaplen)?;
                let sum = || -> Result<u64, BenchError> {
                    hops.iter().map(|(ns, i)| packets(ns, i)).sum()
                };
                let before = sum()?;
                let r = loadgen::run_with(
                    LoadKind::UdpFlood,
                    &ends,
                    opts.run_secs,
                    CPUS,
                    opts.stop.flag(),
                    false,
                )
                .map_err(BenchError::io(format!("the flood with {}", w.name())))?;
                // Let the writer drain what the kernel handed it.
                std::thread::sleep(Duration::from_millis(500));
                let counted = sum()? - before;
                running.children.interrupt();
                drop(running.children);
                let mut written = 0;
                let mut bytes = 0;
                for f in &running.files {
                    written += count(f)?;
                    bytes += std::fs::metadata(f).map_or(0, |m| m.len());
                    let _ = std::fs::remove_file(f);
                }
                let said = says_lost(w, &running.stderr);
                for e in &running.stderr {
                    let _ = std::fs::remove_file(e);
                }
                // The window the writer was open in covers the flood's warm-up too.
                let secs = opts.run_secs + 0.3;
                #[expect(clippy::cast_precision_loss, reason = "counts")]
                let s = CaptureSample {
                    repetition: rep,
                    writer: w,
                    rate: r.rate,
                    counted: if w == Writer::None { 0 } else { counted },
                    written,
                    lost: if w == Writer::None {
                        0
                    } else {
                        counted as i64 - written as i64
                    },
                    says_lost: said,
                    bytes,
                    bytes_per_sec: bytes as f64 / secs,
                    events_per_sec: written as f64 / secs,
                };
                progress(&s);
                samples.push(s);
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
    result?;
    Ok((samples.clone(), summarize(&samples)))
}

fn summarize(samples: &[CaptureSample]) -> Vec<CaptureSummary> {
    let of = |w: Writer| {
        samples
            .iter()
            .filter(move |s| s.writer == w)
            .collect::<Vec<_>>()
    };
    let Some(base) = Spread::over(&of(Writer::None), |s| s.rate) else {
        return Vec::new();
    };
    [Writer::None, Writer::Inspector, Writer::Tcpdump]
        .into_iter()
        .filter_map(|w| {
            let v = of(w);
            let rate = Spread::over(&v, |s| s.rate)?;
            let lost: i64 = v.iter().map(|s| s.lost).sum();
            let counted: u64 = v.iter().map(|s| s.counted).sum();
            #[expect(clippy::cast_precision_loss, reason = "counts")]
            let share = if counted == 0 {
                0.0
            } else {
                lost as f64 / counted as f64
            };
            Some(CaptureSummary {
                writer: w,
                runs: v.len(),
                rate: rate.median,
                rate_min: rate.min,
                rate_max: rate.max,
                ratio: rate.median / base.median,
                events_per_sec: Spread::over(&v, |s| s.events_per_sec)?.median,
                lost,
                lost_share: share,
                bytes_per_sec: Spread::over(&v, |s| s.bytes_per_sec)?.median,
            })
        })
        .collect()
}
