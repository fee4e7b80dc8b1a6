//! SVG charts of a `bench` report: latency by mode, throughput by mode, and connection
//! setup against the number of Services, and each real runtime's mode beside its lab twin.
use super::svg;
use crate::bench::{LoadKind, modes::Report};

/// Writes the charts; returns their paths.
pub fn write(r: &Report, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    std::fs::create_dir_all(dir)?;
    let mut write = |name: &str, text: String| -> std::io::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", p.display())))?;
        files.push(p.display().to_string());
        Ok(())
    };
    let lat_tests: Vec<LoadKind> = [LoadKind::Rr, LoadKind::UdpRr, LoadKind::Crr]
        .into_iter()
        .filter(|t| {
            r.results
                .iter()
                .any(|e| e.workload == *t && e.p50_us.is_some())
        })
        .collect();
    if !lat_tests.is_empty() {
        let vals: Vec<Vec<svg::Bar>> = r
            .modes
            .iter()
            .map(|m| {
                lat_tests
                    .iter()
                    .map(|t| {
                        let e = r
                            .results
                            .iter()
                            .find(|e| &e.mode == m && e.workload == *t)?;
                        Some((e.p50_us?, e.p99_us))
                    })
                    .collect()
            })
            .collect();
        let names: Vec<String> = lat_tests
            .iter()
            .map(|t| format!("{} p50 (whisker: p99)", t.name()))
            .collect();
        write(
            "latency-by-mode.svg",
            svg::bars(
                "Transaction latency by network mode",
                "microseconds",
                &r.modes,
                &names,
                &vals,
            ),
        )?;
    }
    if r.results.iter().any(|e| e.workload == LoadKind::Stream) {
        let vals: Vec<Vec<svg::Bar>> = r
            .modes
            .iter()
            .map(|m| {
                vec![
                    r.results
                        .iter()
                        .find(|e| &e.mode == m && e.workload == LoadKind::Stream)
                        .map(|e| (e.rate, e.rate_spread.map(|s| s.max))),
                ]
            })
            .collect();
        write(
            "throughput-by-mode.svg",
            svg::bars(
                "TCP stream throughput by network mode",
                "Gbit/s (whisker: best run)",
                &r.modes,
                &["stream".into()],
                &vals,
            ),
        )?;
    }
    let lines: Vec<svg::Line> = ["iptables", "nftables"]
        .iter()
        .filter_map(|k| {
            let mut pts: Vec<(f64, f64, f64, f64)> = r
                .results
                .iter()
                .filter(|e| e.workload == LoadKind::Crr && e.kube_proxy.as_deref() == Some(*k))
                .filter_map(|e| {
                    let s = e.connect_p50_spread?;
                    Some((f64::from(e.services?), s.median, s.min, s.max))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!pts.is_empty()).then(|| svg::Line {
                name: format!("kube-proxy {k}"),
                points: pts,
            })
        })
        .collect();
    if !lines.is_empty() {
        write(
            "connect-vs-services.svg",
            svg::lines(
                "ClusterIP connection setup (connect p50) vs number of Services",
                "Services (target last)",
                "microseconds",
                &lines,
            ),
        )?;
    }
    // Lab vs real: each real mode's rr p50 beside its lab twin's (whisker: the slowest run).
    let pairs: Vec<_> = r
        .vs_lab
        .iter()
        .filter(|v| v.workload == LoadKind::Rr)
        .collect();
    if !pairs.is_empty() {
        let p50_max = |mode: &str| {
            r.results
                .iter()
                .find(|e| e.mode == mode && e.workload == LoadKind::Rr)
                .and_then(|e| Some((e.p50_us?, e.p50_spread.map(|s| s.max))))
        };
        let cats: Vec<String> = pairs
            .iter()
            .map(|v| format!("{} / {}", v.real, v.lab))
            .collect();
        let vals: Vec<Vec<svg::Bar>> = pairs
            .iter()
            .map(|v| vec![p50_max(&v.real), p50_max(&v.lab)])
            .collect();
        write(
            "lab-vs-real.svg",
            svg::bars(
                "TCP rr latency: real runtime vs its lab twin",
                "microseconds, p50 (whisker: slowest repetition)",
                &cats,
                &["real".into(), "lab".into()],
                &vals,
            ),
        )?;
    }
    Ok(files)
}
