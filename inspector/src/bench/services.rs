//! `inspector bench services`: how long reading a big cluster's Service rules takes. N
//! generated Services x M endpoints are programmed with kube-proxy's exact rules into a
//! scratch namespace (iptables-restore, then nft -f), dumped back the way `inspector
//! services` reads a node (iptables-save; nft -j), and each dump is parsed over rounds;
//! each round also dumps and parses again (end to end: what re-reading a node costs) and
//! reads the node's change stamp (what following it costs while nothing changes).
use std::{net::Ipv4Addr, time::Instant};

use serde::Serialize;

use super::BenchError;
use crate::{
    services::{iptables, nft, read, rules, stamp},
    sys::netns,
};

/// One round's parse times, end-to-end times (dump + parse, as a node re-read without a
/// stamp would pay) and the change stamp's time (what following costs when nothing changed).
#[derive(Clone, Debug, Serialize)]
pub struct ParseSample {
    pub repetition: usize,
    pub iptables_ms: f64,
    pub nft_ms: f64,
    pub iptables_end_to_end_ms: f64,
    pub nft_end_to_end_ms: f64,
    pub stamp_ms: f64,
    pub iptables_services: usize,
    pub nft_services: usize,
}

/// What was built and dumped once, before the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ServicesSetup {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub iptables_restore_ms: f64,
    pub nft_load_ms: f64,
    pub iptables_save_ms: f64,
    pub iptables_save_bytes: usize,
    pub iptables_rules: usize,
    pub nft_json_ms: f64,
    pub nft_json_bytes: usize,
}

/// The scratch namespace, removed on drop.
struct Scratch(String);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Runs `program args` in namespace `ns` with `text` on stdin; how long it took (ms).
fn feed(ns: &std::path::Path, program: &str, args: &[&str], text: &str) -> Result<f64, BenchError> {
    let t = Instant::now();
    let mut cmd =
        netns::command_in(ns, program).map_err(BenchError::io("entering the scratch namespace"))?;
    cmd.args(args);
    let out = crate::sys::process::feed(cmd, text)
        .map_err(BenchError::io(format!("running {program}")))?;
    if !out.status.success() {
        return Err(BenchError::Observer(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Builds the rules, dumps them, and parses each dump `rounds` times.
///
/// # Errors
/// The scratch namespace or a rules tool failing.
pub fn run(
    count: usize,
    per: usize,
    rounds: usize,
    mut progress: impl FnMut(&ParseSample),
) -> Result<(ServicesSetup, Vec<ParseSample>), BenchError> {
    // Scratch namespaces of earlier runs that were killed (their process is gone).
    for old in netns::list_with_prefix("insp-bench-svc-") {
        let pid = old.trim_start_matches("insp-bench-svc-");
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = netns::delete(&old);
        }
    }
    let name = format!("insp-bench-svc-{}", std::process::id());
    let path = netns::create(&name).map_err(BenchError::io("creating the scratch namespace"))?;
    let _scratch = Scratch(name);
    let svcs = rules::generated(
        count,
        per,
        Ipv4Addr::new(198, 18, 128, 0),
        Ipv4Addr::new(198, 19, 128, 0),
    );
    let cfg = rules::Config {
        cluster_cidr: Some("198.19.128.0/17".into()),
        service_cidr: Some("198.18.128.0/17".into()),
    };
    // A fresh namespace: one full restore (with --noflush iptables-nft 1.8.9 is quadratic).
    let iptables_restore_ms = feed(
        &path,
        "iptables-restore",
        &[],
        &rules::iptables(&svcs, &cfg),
    )?;
    let nft_load_ms = feed(&path, "nft", &["-f", "-"], &rules::nftables(&svcs, &cfg))?;
    let t = Instant::now();
    let saved = read::iptables_save(Some(&path))?;
    let iptables_save_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let json = read::nft_json(Some(&path))?
        .ok_or_else(|| BenchError::Observer("the kube-proxy table vanished".into()))?;
    let nft_json_ms = t.elapsed().as_secs_f64() * 1e3;
    let setup = ServicesSetup {
        services: count,
        endpoints_per_service: per,
        iptables_restore_ms,
        nft_load_ms,
        iptables_save_ms,
        iptables_save_bytes: saved.len(),
        iptables_rules: saved.lines().filter(|l| l.starts_with("-A ")).count(),
        nft_json_ms,
        nft_json_bytes: json.len(),
    };
    let mut samples = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        let a = iptables::parse(&saved);
        let iptables_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let b = nft::parse(&json)?;
        let nft_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let a2 = iptables::parse(&read::iptables_save(Some(&path))?);
        let iptables_end_to_end_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let json2 = read::nft_json(Some(&path))?
            .ok_or_else(|| BenchError::Observer("the kube-proxy table vanished".into()))?;
        let b2 = nft::parse(&json2)?;
        let nft_end_to_end_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let st = stamp::of(Some(&path));
        let stamp_ms = t.elapsed().as_secs_f64() * 1e3;
        if !st.complete() {
            return Err(BenchError::Observer(format!(
                "the rules' change stamp could not be read: {st:?}"
            )));
        }
        if a.len() != count || b.len() != count || a2.len() != count || b2.len() != count {
            return Err(BenchError::Observer(format!(
                "parsed {} (iptables) and {} (nftables) services of {count}",
                a.len(),
                b.len()
            )));
        }
        let s = ParseSample {
            repetition: round,
            iptables_ms,
            nft_ms,
            iptables_end_to_end_ms,
            nft_end_to_end_ms,
            stamp_ms,
            iptables_services: a.len(),
            nft_services: b.len(),
        };
        progress(&s);
        samples.push(s);
    }
    Ok((setup, samples))
}

/// Target from the service-routing issue: each format parsed in under this.
pub const PARSE_TARGET_MS: f64 = 150.0;

/// One format's parse time over the repetitions (`type: "services_summary"`).
#[derive(Clone, Debug, Serialize)]
pub struct ParseSummary {
    pub what: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
    /// The target, for the parse rows (none is set for the others).
    pub target_ms: Option<f64>,
    pub met: Option<bool>,
    pub services: usize,
    pub endpoints: usize,
}

/// Medians and spreads of each format's parse time.
#[must_use]
pub fn summarize(setup: &ServicesSetup, samples: &[ParseSample]) -> Vec<ParseSummary> {
    /// (what, its time in a sample, its input's size, whether the parse target applies).
    type Row = (&'static str, fn(&ParseSample) -> f64, usize, bool);
    let rows: [Row; 5] = [
        (
            "parse: iptables-save text",
            |s| s.iptables_ms,
            setup.iptables_save_bytes,
            true,
        ),
        ("parse: nft JSON", |s| s.nft_ms, setup.nft_json_bytes, true),
        (
            "end to end: iptables-save + parse",
            |s| s.iptables_end_to_end_ms,
            setup.iptables_save_bytes,
            false,
        ),
        (
            "end to end: nft -j + parse",
            |s| s.nft_end_to_end_ms,
            setup.nft_json_bytes,
            false,
        ),
        ("follow: change stamp, no change", |s| s.stamp_ms, 0, false),
    ];
    rows.into_iter()
        .filter_map(|(what, f, bytes, targeted)| {
            let s = super::Spread::over(samples, f)?;
            Some(ParseSummary {
                what,
                median_ms: s.median,
                min_ms: s.min,
                max_ms: s.max,
                bytes,
                target_ms: targeted.then_some(PARSE_TARGET_MS),
                met: targeted.then_some(s.median < PARSE_TARGET_MS),
                services: setup.services,
                endpoints: setup.endpoints_per_service,
            })
        })
        .collect()
}
