//! `cargo xtask fuzz [--secs N] [--runs N] [--asan] [TARGET...]`: every cargo-fuzz target
//! of `inspector/fuzz` (libFuzzer, nightly), one after the other, each until N seconds or
//! N executions; a table of executions, rate and crashes at the end. A crash stops the
//! run: its input is kept under `inspector/fuzz/artifacts/TARGET/`, to be copied into
//! `inspector/fuzz/regressions/TARGET/` with the fix (`tests/fuzz_regressions.rs` runs
//! every file there through the same harness on stable, in every test run).
//!
//! The corpus grows in `inspector/fuzz/corpus/TARGET/` (not committed), seeded from the
//! project's own fixtures (Docker answers, kube-proxy rules, lab specs) and from
//! `inspector/fuzz/seeds/TARGET/`. Without `--asan` the targets run without a sanitizer:
//! the harnesses are safe Rust, built with overflow checks and debug assertions, so a
//! panic, an overflow or an allocation past libFuzzer's limit is what is found, at several
//! times the speed.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

/// Every target (the same list as `inspector::fuzzing::TARGETS`; a unit test of the
/// regression suite checks both name the same targets).
pub const TARGETS: &[&str] = &[
    "packet_parser",
    "iptables_save",
    "nft_json",
    "docker_client",
    "cri_info",
    "conntrack_netlink",
    "lab_spec",
    "btf",
    "filter_expr",
    "cbpf_program",
    "capture_reader",
];

/// Fixtures of the project that seed a target's corpus.
fn fixtures(target: &str) -> Vec<PathBuf> {
    let dir = |d: &str, ext: &[&str]| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension()
                            .and_then(|x| x.to_str())
                            .is_some_and(|x| ext.contains(&x))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match target {
        "iptables_save" => dir("inspector/testdata/kube-proxy", &["txt"]),
        "nft_json" => dir("inspector/testdata/kube-proxy", &["json"]),
        "docker_client" => dir("inspector/testdata/docker", &["json", "jsonl"]),
        "lab_spec" => dir("inspector/src/lab/specs", &["toml"]),
        _ => Vec::new(),
    }
}

struct Options {
    secs: u64,
    runs: Option<u64>,
    asan: bool,
    targets: Vec<String>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        secs: 60,
        runs: None,
        asan: false,
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> anyhow::Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{what} needs a whole number"))
        };
        match a.as_str() {
            "--secs" => o.secs = num("--secs")?,
            "--runs" => o.runs = Some(num("--runs")?),
            "--asan" => o.asan = true,
            t if TARGETS.contains(&t) => o.targets.push(t.to_owned()),
            other => bail!(
                "unknown fuzz argument '{other}': --secs N, --runs N, --asan, or targets ({})",
                TARGETS.join(", ")
            ),
        }
    }
    if o.targets.is_empty() {
        o.targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(o)
}

/// One target's result.
struct Outcome {
    target: String,
    runs: u64,
    secs: f64,
}

fn sanitizer(o: &Options) -> &'static str {
    if o.asan { "address" } else { "none" }
}

fn seed(target: &str, corpus: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(corpus)?;
    let mut files = fixtures(target);
    for d in ["inspector/fuzz/seeds", "inspector/fuzz/regressions"] {
        if let Ok(rd) = std::fs::read_dir(Path::new(d).join(target)) {
            files.extend(rd.flatten().map(|e| e.path()));
        }
    }
    for f in files {
        let name = format!(
            "seed-{}",
            f.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        );
        std::fs::copy(&f, corpus.join(name))
            .with_context(|| format!("seeding {target} with {}", f.display()))?;
    }
    Ok(())
}

/// Runs the targets; prints one line per target and the table.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    let nightly = |args: &[&str]| {
        let mut c = Command::new("rustup");
        c.env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .current_dir("inspector")
            .args(["run", "nightly", "cargo", "fuzz"])
            .args(args);
        c
    };
    crate::run(&mut nightly(&["build", "-O", "-s", sanitizer(&o)]))?;
    let mut done = Vec::new();
    for t in &o.targets {
        let corpus = Path::new("inspector/fuzz/corpus").join(t);
        seed(t, &corpus)?;
        let artifacts = format!("fuzz/artifacts/{t}/");
        std::fs::create_dir_all(Path::new("inspector").join(&artifacts))?;
        let mut c = nightly(&["run", "-O", "-s", sanitizer(&o), t]);
        c.arg(format!("fuzz/corpus/{t}"))
            .arg("--")
            .arg(format!("-max_total_time={}", o.secs))
            .arg(format!("-artifact_prefix={artifacts}"))
            .arg("-print_final_stats=1")
            .arg("-rss_limit_mb=2048")
            .arg("-malloc_limit_mb=1024");
        if let Some(r) = o.runs {
            c.arg(format!("-runs={r}"));
        }
        // libpcap compiles an expression in about a millisecond, and placing a syntax
        // error compiles prefixes: short inputs keep the rate up (expressions are a line).
        if t == "filter_expr" {
            c.arg("-max_len=256");
        }
        let t0 = Instant::now();
        let out = c
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running the fuzz target {t}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if !out.status.success() {
            // The panic and the input, as libFuzzer and cargo-fuzz print them.
            let lines: Vec<&str> = log.lines().collect();
            let tail: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, l)| {
                    l.contains("panicked at")
                        || lines
                            .get(i.wrapping_sub(1))
                            .is_some_and(|p| p.contains("panicked at"))
                        || l.contains("Debug`")
                        || lines
                            .get(i.wrapping_sub(2))
                            .is_some_and(|p| p.contains("Debug`"))
                })
                .map(|(_, l)| *l)
                .collect();
            bail!(
                "fuzz target {t} failed after {runs} executions; the input is in \
                 inspector/{artifacts} (copy it into inspector/fuzz/regressions/{t}/ with \
                 the fix):\n{}",
                tail.join("\n")
            );
        }
        let secs = t0.elapsed().as_secs_f64();
        println!("fuzz {t}: {runs} executions in {secs:.0} s, no crash");
        done.push(Outcome {
            target: t.clone(),
            runs,
            secs,
        });
    }
    println!("\n| target | executions | seconds | executions/s | crashes |");
    println!("|---|---:|---:|---:|---:|");
    for d in &done {
        #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
        let rate = d.runs as f64 / d.secs.max(1e-9);
        println!(
            "| {} | {} | {:.0} | {:.0} | 0 |",
            d.target, d.runs, d.secs, rate
        );
    }
    Ok(())
}
