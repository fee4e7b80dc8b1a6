//! `cargo xtask setup | demo | test | bench | ci`: everything that needs more than `cargo`.
//! `setup` installs what the project needs, idempotently, one line per step; `demo`, `test`
//! and `bench` run it first, so each works on a fresh machine of this kind.
mod fuzz;
mod layers;
mod setup;
mod vmtest;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

fn usage() -> &'static str {
    "usage: cargo xtask <setup|demo|test|vmtest|image|bench [overhead ...]|layers|ci>\n\
     \x20 setup   install apt packages, bpf-linker (LLVM 22) and nightly rust-src (idempotent)\n\
     \x20 demo    set up, build, and run the embedded lab demo (needs root)\n\
     \x20 test    set up, then run every test: unit tests, privileged end-to-end tests, the kernel matrix\n\
     \x20 bench   set up, build release, run `inspector bench <args>` (e.g. `bench overhead`)\n\
     \x20 vmtest  the kernel matrix: the smoke suite on the host (TCX, legacy tc) and on Linux 6.1 under qemu\n\
     \x20 image   the agent's image: target/image/inspector-0.1.0.tar (ctr images import, docker load)\n\
     \x20 layers  check that no module imports one above it in the data flow, and no circle\n\
     \x20 fuzz    [--secs N] [--runs N] [--asan] [TARGET...]: the cargo-fuzz targets, one after the other\n\
     \x20 ci      clippy + rustfmt check + test"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Run from the workspace root whatever directory cargo was called from.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: error: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let res = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("layers") => layers::run(),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("ci") => ci(),
        Some("fuzz") => setup::run().and_then(|()| fuzz::run(&args[1..])),
        Some("image") => image(),
        Some("vmtest") => require_root("the kernel matrix")
            .and_then(|()| setup::run())
            .and_then(|()| vmtest::run(&args[1..])),
        _ => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, failing with its name if it does not succeed.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "{what} needs root (it attaches eBPF programs and creates network namespaces): run it with sudo"
        );
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn demo(extra: &[String]) -> anyhow::Result<()> {
    require_root("the demo")?;
    setup::run()?;
    run(cargo().args(["build", "--release", "-p", "inspector"]))?;
    run(Command::new("target/release/inspector")
        .arg("demo")
        .args(extra))
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    require_root("the test suite")?;
    setup::run()?;
    layers::run()?;
    // Unit tests (unprivileged) and the privileged end-to-end tests (marked #[ignore] so a
    // plain `cargo test` never needs root). Two test threads: this machine has two cores.
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "inspector-ebpf",
            "--no-fail-fast",
        ])
        // The smoke suite runs in the kernel matrix below, once per kernel and attach mode;
        // the IPVS tests need a kernel with IP_VS: the matrix's VM runs them.
        .args(["--", "--include-ignored", "--test-threads=2"])
        .args(["--skip", "smoke_", "--skip", "ipvs_mode"])
        .args(extra))?;
    // Every fuzz target for a short while (the recorded long run is `cargo xtask fuzz`).
    fuzz::run(&["--secs".into(), "5".into()])?;
    // The kernel matrix: host TCX, host legacy tc, Linux 6.1 under qemu. A VM that cannot
    // start fails the suite.
    vmtest::run(&[])
}

/// The agent's image tarball (OCI layout + Docker archive), built with no registry or daemon.
fn image() -> anyhow::Result<()> {
    setup::run()?;
    run(cargo().args(["build", "--release", "-p", "inspector"]))?;
    std::fs::create_dir_all("target/image")?;
    run(Command::new("deploy/build-image.sh").args([
        "target/release/inspector",
        "target/image/inspector-0.1.0.tar",
    ]))
}

fn bench(extra: &[String]) -> anyhow::Result<()> {
    require_root("the benchmarks")?;
    setup::run()?;
    run(cargo().args(["build", "--release", "-p", "inspector"]))?;
    run(Command::new("target/release/inspector")
        .arg("bench")
        .args(extra))
}

fn ci() -> anyhow::Result<()> {
    setup::run()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "inspector-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate only builds for the BPF target, with nightly (as aya-build does).
    run(Command::new("rustup")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .current_dir("inspector-ebpf")
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"]))?;
    test(&[])
}
