//! `cargo xtask setup`: installs everything the project needs, idempotently. One line per
//! step; a failure names the step. Nothing is assumed to be installed by hand.
use std::process::Command;

use anyhow::{Context as _, bail};

/// Debian packages: the LLVM 22 libraries bpf-linker links against, and the tools the tests,
/// the demo and the benchmarks use.
const APT_PACKAGES: &[&str] = &[
    // bpf-linker must link the LLVM that nightly rustc uses (22).
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
    // Networking tools the tests use as independent oracles, and that labs rely on.
    "iproute2",
    "iptables",
    "nftables",
    "conntrack",
    "bpftool",
    "iputils-ping",
    "procps",
    // Benchmarks.
    "iperf3",
    "sockperf",
    "tcpdump",
    // Capture files are checked with Wireshark's own reader.
    "tshark",
    // pcap-filter expressions are compiled by libpcap (linked by the pcap crate).
    "libpcap0.8-dev",
    // CRI client code generation.
    "protobuf-compiler",
    // Real container runtimes for the identity tests: dockerd (with its containerd and
    // runc), a CRI containerd with the CNI bridge plugin, and a static busybox to build
    // images from (no registry is reachable). The packages' service starts are refused by
    // policy-rc.d here; tests start and stop their own daemons.
    "docker.io",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
    // `dot`, to check that `topology -o dot` is valid Graphviz.
    "graphviz",
    // The kernel matrix (`cargo xtask vmtest`): other kernels booted under qemu from an
    // initramfs packed with cpio.
    "qemu-system-x86",
    "cpio",
    // ... and what its kube-proxy IPVS-mode node is built and checked with.
    "ipvsadm",
    "ipset",
    // `inspector agent` is scraped by a real Prometheus in its test (and checked with
    // promtool).
    "prometheus",
    // A venv for kubernetes-validate (PyPI), which checks deploy/ offline.
    "python3-venv",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<()> {
    match f() {
        Ok(msg) => {
            println!("setup: {name:<22} {msg}");
            Ok(())
        }
        Err(e) => bail!("setup step '{name}' failed: {e:#}"),
    }
}

/// Runs a command and returns its stdout, failing with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map_or(true, |o| {
                    !String::from_utf8_lossy(&o.stdout).contains("install ok installed")
                })
        })
        .collect()
}

fn apt() -> anyhow::Result<String> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(format!(
            "ok ({} packages already installed)",
            APT_PACKAGES.len()
        ));
    }
    crate::run(Command::new("apt-get").args(["update", "-q"]))?;
    crate::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still = missing_packages();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(format!("installed {}", missing.join(" ")))
}

fn nightly() -> anyhow::Result<String> {
    let list = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !list.lines().any(|l| l.starts_with("nightly")) {
        crate::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        return Ok("installed nightly".into());
    }
    let v = output(Command::new("rustc").args(["+nightly", "--version"]))?;
    Ok(format!("ok ({})", v.trim()))
}

fn rust_src() -> anyhow::Result<String> {
    let have = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if have.lines().any(|l| l.trim() == "rust-src") {
        return Ok("ok (already installed)".into());
    }
    crate::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok("installed".into())
}

/// bpf-linker, linked against LLVM 22 (checked with ldd: a bpf-linker built against another
/// LLVM would accept the object and then miscompile or fail to read it).
/// Where `kubernetes-validate` (`PyPI`) is installed: a venv of its own (Debian's Python is
/// externally managed). It carries Kubernetes' schemas, so `deploy/` validates offline.
pub const KUBE_VALIDATE_VENV: &str = "/var/cache/inspector/kubernetes-validate";
const KUBE_VALIDATE_VERSION: &str = "1.37.0";

fn kubernetes_validate() -> anyhow::Result<String> {
    let venv = std::path::Path::new(KUBE_VALIDATE_VENV);
    let bin = venv.join("bin/kubernetes-validate");
    if bin.exists() {
        let v = output(Command::new(&bin).arg("--version")).unwrap_or_default();
        if v.trim() == KUBE_VALIDATE_VERSION {
            return Ok(format!("ok (kubernetes-validate {})", v.trim()));
        }
    }
    crate::run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    crate::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .arg(format!("kubernetes-validate=={KUBE_VALIDATE_VERSION}")),
    )?;
    Ok(format!(
        "installed kubernetes-validate {KUBE_VALIDATE_VERSION} in {KUBE_VALIDATE_VENV}"
    ))
}

fn bpf_linker() -> anyhow::Result<String> {
    let bin = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?
        .join("bin/bpf-linker");
    if bin.exists() {
        let version = output(Command::new(&bin).arg("--version")).unwrap_or_default();
        let libs = output(Command::new("ldd").arg(&bin)).unwrap_or_default();
        if version.contains(BPF_LINKER_VERSION) && libs.contains("libLLVM.so.22") {
            return Ok(format!("ok ({}, LLVM 22)", version.trim()));
        }
    }
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )?;
    Ok(format!(
        "installed bpf-linker {BPF_LINKER_VERSION} (LLVM 22)"
    ))
}

pub fn run() -> anyhow::Result<()> {
    step("apt packages", apt)?;
    step("nightly toolchain", nightly)?;
    step("nightly rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("kubernetes-validate", kubernetes_validate)?;
    step("cargo-fuzz", cargo_fuzz)?;
    Ok(())
}

/// cargo-fuzz (libFuzzer targets on nightly), for `cargo xtask fuzz` and the short runs of
/// `cargo xtask test`.
fn cargo_fuzz() -> anyhow::Result<String> {
    const VERSION: &str = "0.13.2";
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if have.as_deref().is_some_and(|v| v.contains(VERSION)) {
        return Ok(format!("cargo-fuzz {VERSION} present"));
    }
    crate::run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        VERSION,
    ]))?;
    Ok(format!("installed cargo-fuzz {VERSION}"))
}
