//! `cargo xtask vmtest`: the kernel matrix. The smoke suite (`inspector/tests/smoke.rs`) runs
//! against the release binary in four cells: the host kernel as it picks (the global hooks
//! for flows and trace, TCX for per-hop timing), the host kernel forced to TCX and to legacy
//! tc, and Debian 12's Linux 6.1 cloud kernel booted under qemu (TCG: nested KVM fails on
//! this kind of machine), where it picks the global hooks and, TCX missing, legacy tc.
//! One line per check and cell; any failure, or a cell that could not run, fails the command.
//!
//! The kernel comes from the Debian archive (`apt-get download`, unpacked with `dpkg-deb
//! -x`, cached in `CACHE`). The initramfs is built here: busybox-static as /init's shell,
//! the release binary, the smoke test binary, iproute2's `ip` and `tc`, `ping` and `bpftool`
//! with the libraries `ldd` names, and the kernel modules the suite needs with their
//! dependencies (read from each module's `.modinfo`: the package ships no modules.dep, and
//! kmod is not installed; a few lines instead of another package).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::setup::output;

/// Where downloaded kernels are kept between runs.
const CACHE: &str = "/var/cache/inspector/vmtest";
/// Which Debian kernel package to boot (the newest of this pattern).
const KERNEL_PATTERN: &str = r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$";
/// Modules the suites need (their dependencies are added): the smoke suite's, then what a
/// kube-proxy IPVS-mode node uses (IPVS with its round-robin scheduler, the dummy
/// `kube-ipvs0`, ipsets, legacy iptables with its matches and targets, conntrack over
/// netlink, bridged traffic through netfilter).
const MODULES: &[&str] = &[
    "veth",
    "bridge",
    "sch_ingress",
    "cls_bpf",
    "ip_vs",
    "ip_vs_rr",
    "dummy",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_set_bitmap_port",
    "xt_set",
    "iptable_nat",
    "iptable_filter",
    "xt_MASQUERADE",
    "xt_mark",
    "xt_comment",
    "xt_addrtype",
    "xt_conntrack",
    "nf_conntrack_netlink",
    "br_netfilter",
    "nf_tables",
];
/// Tools copied into the VM with their libraries, and the names each answers to (iptables
/// is the legacy backend there: fewer modules than `nf_tables`' compat layer).
const TOOLS: &[(&str, &[&str])] = &[
    ("/usr/sbin/ip", &["ip"]),
    ("/usr/sbin/tc", &["tc"]),
    ("/usr/bin/ping", &["ping"]),
    ("/usr/sbin/bpftool", &["bpftool"]),
    ("/usr/sbin/conntrack", &["conntrack"]),
    ("/usr/sbin/ipvsadm", &["ipvsadm"]),
    ("/usr/sbin/ipset", &["ipset"]),
    ("/usr/sbin/nft", &["nft"]),
    (
        "/usr/sbin/xtables-legacy-multi",
        &[
            "xtables-legacy-multi",
            "iptables",
            "iptables-save",
            "iptables-restore",
        ],
    ),
];
/// iptables' extensions, loaded at run time.
const XTABLES: &str = "/usr/lib/x86_64-linux-gnu/xtables";
/// Checks only a kernel with `IP_VS` can run (the VM's); "n/a" on the host.
const IPVS_PREFIX: &str = "ipvs_";
/// The whole VM run, boot to poweroff, at most.
const VM_TIMEOUT_SECS: u32 = 1200;

/// One column of the matrix.
struct Cell {
    name: String,
    /// The host (no `IP_VS` here: the IPVS checks are the VM's).
    host: bool,
    kernel: String,
    /// Check name -> passed.
    checks: BTreeMap<String, bool>,
    /// Why it could not run, if so.
    error: Option<String>,
}

/// "test NAME ... ok|FAILED" lines of a libtest run.
fn parse_tests(text: &str) -> BTreeMap<String, bool> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let Some(rest) = l.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.split_once(" ... ") else {
            continue;
        };
        if name.starts_with("smoke_") || name.starts_with(IPVS_PREFIX) {
            m.insert(
                name.trim_start_matches("smoke_").to_owned(),
                verdict.trim() == "ok",
            );
        }
    }
    m
}

/// Builds the test binary of `target` (`inspector/tests/TARGET.rs`) and returns its path.
fn test_binary(target: &str) -> anyhow::Result<PathBuf> {
    let out = output(crate::cargo().args([
        "test",
        "-p",
        "inspector",
        "--test",
        target,
        "--no-run",
        "--message-format=json",
    ]))?;
    for l in out.lines().filter(|l| l.contains("\"executable\":\"")) {
        let start = l.find("\"executable\":\"").unwrap_or(0) + 14;
        if let Some(len) = l[start..].find('"') {
            let p = &l[start..start + len];
            if p.contains(&format!("/{target}-")) {
                return Ok(PathBuf::from(p));
            }
        }
    }
    bail!("cargo built no {target} test binary")
}

fn host_cell(name: &str, smoke: &Path, bin: &Path, attach: &str) -> Cell {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let out = Command::new(smoke)
        .args(["--include-ignored", "--test-threads=1"])
        .env("INSPECTOR_BIN", bin)
        .env("INSPECTOR_SMOKE_ATTACH", attach)
        .output();
    let (checks, error) = match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if !o.status.success() {
                eprintln!("{text}{}", String::from_utf8_lossy(&o.stderr));
            }
            (parse_tests(&text), None)
        }
        Err(e) => (
            BTreeMap::new(),
            Some(format!("running {}: {e}", smoke.display())),
        ),
    };
    Cell {
        name: name.to_owned(),
        host: true,
        kernel,
        checks,
        error,
    }
}

/// The newest matching kernel package, downloaded and unpacked once.
fn kernel() -> anyhow::Result<(PathBuf, PathBuf)> {
    let list = output(Command::new("apt-cache").args(["search", "--names-only", KERNEL_PATTERN]))?;
    let mut names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_by_key(|n| {
        n.split('-')
            .nth(4)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let Some(pkg) = names.last() else {
        bail!("apt has no package matching {KERNEL_PATTERN} (apt-get update?)");
    };
    let dir = Path::new(CACHE).join(pkg);
    let root = dir.join("root");
    if !root.join("boot").is_dir() {
        std::fs::create_dir_all(&dir)?;
        crate::run(
            Command::new("apt-get")
                .args(["download", "-q", pkg])
                .current_dir(&dir),
        )?;
        let deb = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("apt-get download left no .deb")?;
        let tmp = dir.join("root.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
        std::fs::rename(&tmp, &root)?;
    }
    let vmlinuz = std::fs::read_dir(root.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz in the package")?;
    let modules = std::fs::read_dir(root.join("lib/modules"))?
        .flatten()
        .map(|e| e.path())
        .next()
        .context("no modules in the package")?;
    Ok((vmlinuz, modules))
}

/// Every `.ko` under `dir`, by module name (dashes as underscores).
fn index_modules(dir: &Path, into: &mut BTreeMap<String, PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, into);
        } else if let Some(n) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            into.insert(n.replace('-', "_"), p);
        }
    }
}

/// The `depends=` of a module's `.modinfo`.
fn depends(ko: &Path) -> anyhow::Result<Vec<String>> {
    let b = std::fs::read(ko)?;
    let key = b"\0depends=";
    let Some(at) = b.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let v = &b[at + key.len()..];
    let end = v.iter().position(|c| *c == 0).unwrap_or(v.len());
    Ok(String::from_utf8_lossy(&v[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect())
}

/// `wanted` with their dependencies, dependencies first.
fn module_order(all: &BTreeMap<String, PathBuf>, wanted: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    fn visit(
        n: &str,
        all: &BTreeMap<String, PathBuf>,
        seen: &mut Vec<String>,
        out: &mut Vec<PathBuf>,
    ) -> anyhow::Result<()> {
        if seen.iter().any(|s| s == n) {
            return Ok(());
        }
        seen.push(n.to_owned());
        let ko = all
            .get(n)
            .with_context(|| format!("module {n} is not in the package"))?;
        for d in depends(ko)? {
            visit(&d, all, seen, out)?;
        }
        out.push(ko.clone());
        Ok(())
    }
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    for w in wanted {
        visit(w, all, &mut seen, &mut out)?;
    }
    Ok(out)
}

/// Copies `bin` to `root/bin/NAME` and every library `ldd` names to the same path in `root`.
fn copy_with_libs(root: &Path, bin: &Path, name: &str) -> anyhow::Result<()> {
    std::fs::copy(bin, root.join("bin").join(name))
        .with_context(|| format!("copying {}", bin.display()))?;
    let ldd = output(Command::new("ldd").arg(bin)).unwrap_or_default();
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = root.join(lib.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(lib, &dest).with_context(|| format!("copying {lib}"))?;
    }
    Ok(())
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /run /tmp /var
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
# /tmp stays the initramfs' own (writable): a tmpfs there would hide the schemas of a
# checkout under /tmp.
ln -s /run /var/run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
for m in $(cat /modules.order); do insmod /modules/$m || echo "VMTEST-MODULE-FAILED $m"; done
ip link set lo up
echo "VMTEST-KERNEL $(uname -r)"
echo VMTEST-STATUS
/bin/inspector status
echo '$ inspector flows --attach tcx --duration 1'
/bin/inspector flows --attach tcx --duration 1 2>&1
echo VMTEST-BEGIN
INSPECTOR_BIN=/bin/inspector /bin/smoke --include-ignored --test-threads=1 2>&1
s=$?
INSPECTOR_BIN=/bin/inspector /bin/ipvs --include-ignored --test-threads=1 --show-output 2>&1
i=$?
echo VMTEST-IPVS
/bin/inspector lab up --kube --kube-proxy ipvs >/dev/null 2>&1
echo '$ inspector services --lab insp-kube'
/bin/inspector services --lab insp-kube 2>&1
echo '$ ipvsadm -L -n (in insp-kube-node)'
/bin/ip netns exec insp-kube-node ipvsadm -L -n 2>&1
for w in web-0 web-1 web-2; do /bin/ip netns exec insp-kube-$w nc -l -p 8080 </dev/null >/dev/null 2>&1 & done
sleep 1
echo '$ inspector path insp-kube/client shop/web'
/bin/inspector path insp-kube/client shop/web 2>&1
/bin/inspector lab down --name insp-kube >/dev/null 2>&1
echo VMTEST-IPVS-END
echo "VMTEST-EXIT $s $i"
poweroff -f
"#;

/// Builds the initramfs and returns its path.
fn initramfs(
    work: &Path,
    modules_dir: &Path,
    bin: &Path,
    suites: &Suites,
) -> anyhow::Result<PathBuf> {
    let root = work.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "modules", "etc"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("busybox-static")?;
    // The tests validate every JSON record against the published schemas, read from the
    // path they were built at.
    // (`inspector/../docs/schema`: the crate's directory must exist for `..` to resolve).
    let krate = std::fs::canonicalize("inspector")?;
    std::fs::create_dir_all(root.join(krate.strip_prefix("/").unwrap_or(&krate)))?;
    let schema = std::fs::canonicalize("docs/schema")?;
    let into = root.join(schema.strip_prefix("/").unwrap_or(&schema));
    std::fs::create_dir_all(&into)?;
    for e in std::fs::read_dir(&schema)?.flatten() {
        std::fs::copy(e.path(), into.join(e.file_name()))?;
    }
    copy_with_libs(&root, bin, "inspector")?;
    copy_with_libs(&root, &suites.smoke, "smoke")?;
    copy_with_libs(&root, &suites.ipvs, "ipvs")?;
    for (t, names) in TOOLS {
        copy_with_libs(&root, Path::new(t), names[0])?;
        for n in &names[1..] {
            std::os::unix::fs::symlink(names[0], root.join("bin").join(n))?;
        }
    }
    // ipset and iptables name protocols through /etc/protocols.
    for f in ["/etc/protocols", "/etc/services"] {
        std::fs::copy(f, root.join(f.trim_start_matches('/')))?;
    }
    let xt = root.join(XTABLES.trim_start_matches('/'));
    std::fs::create_dir_all(&xt)?;
    for e in std::fs::read_dir(XTABLES)?.flatten() {
        std::fs::copy(e.path(), xt.join(e.file_name()))?;
    }
    let mut all = BTreeMap::new();
    index_modules(modules_dir, &mut all);
    let mut order = String::new();
    for ko in module_order(&all, MODULES)? {
        let name = ko
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        std::fs::copy(&ko, root.join("modules").join(&name))?;
        order.push_str(&name);
        order.push('\n');
    }
    std::fs::write(root.join("modules.order"), order)?;
    std::fs::write(root.join("init"), INIT)?;
    crate::run(Command::new("chmod").arg("755").arg(root.join("init")))?;
    let out = work.join("initrd.cpio");
    crate::run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
        root.display(),
        out.display()
    )))?;
    Ok(out)
}

/// The test binaries the VM runs.
struct Suites {
    smoke: PathBuf,
    ipvs: PathBuf,
}

fn vm_cell(bin: &Path, suites: &Suites) -> Cell {
    let mut cell = Cell {
        name: "qemu Debian 12 6.1 (auto)".into(),
        host: false,
        kernel: String::new(),
        checks: BTreeMap::new(),
        error: None,
    };
    let run = || -> anyhow::Result<String> {
        let (vmlinuz, modules) = kernel()?;
        std::fs::create_dir_all("target/vmtest")?;
        let work = &std::fs::canonicalize("target/vmtest")?;
        let initrd = initramfs(work, &modules, bin, suites)?;
        let out = Command::new("timeout")
            .arg(VM_TIMEOUT_SECS.to_string())
            .args([
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-m",
                "2048",
            ])
            .args(["-smp", "2", "-nographic", "-no-reboot", "-kernel"])
            .arg(&vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=1"])
            .output()
            .context("starting qemu-system-x86_64 (cargo xtask setup installs it)")?;
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        std::fs::write(work.join("console.log"), &text)?;
        if !text.contains("VMTEST-EXIT") {
            bail!(
                "the VM did not finish the suite ({}; console in target/vmtest/console.log)",
                out.status
            );
        }
        Ok(text)
    };
    match run() {
        Ok(text) => {
            // (The console may put escape sequences before a line.)
            text.lines()
                .find_map(|l| l.split_once("VMTEST-KERNEL ").map(|(_, k)| k))
                .unwrap_or("?")
                .trim()
                .clone_into(&mut cell.kernel);
            if let Some(d) = text.split("VMTEST-IPVS\n").nth(1) {
                let d = d.split("VMTEST-IPVS-END").next().unwrap_or_default();
                println!("kube-proxy IPVS mode on {}:\n{d}", cell.kernel);
            }
            if let Some(st) = text.split("VMTEST-STATUS").nth(1) {
                let st = st.split("VMTEST-BEGIN").next().unwrap_or_default();
                println!("inspector status on {}:{st}", cell.kernel);
            }
            for l in text
                .lines()
                .filter(|l| l.starts_with("VMTEST-MODULE-FAILED"))
            {
                eprintln!("xtask: vmtest: {l}");
            }
            let suite = text.split("VMTEST-BEGIN").nth(1).unwrap_or_default();
            cell.checks = parse_tests(suite);
            if text.lines().any(|l| l.trim() == "VMTEST-EXIT 0 0") {
                // all passed
            } else {
                eprintln!("{suite}");
            }
        }
        Err(e) => cell.error = Some(format!("{e:#}")),
    }
    cell
}

fn print_table(cells: &[Cell]) {
    let mut names: Vec<&String> = cells.iter().flat_map(|c| c.checks.keys()).collect();
    names.sort();
    names.dedup();
    let w = names.iter().map(|n| n.len()).max().unwrap_or(5).max(12);
    let cw = cells
        .iter()
        .map(|c| c.name.len().max(c.kernel.len()))
        .max()
        .unwrap_or(10)
        + 2;
    let mut head = format!("{:<w$}", "check");
    let mut kern = format!("{:<w$}", "kernel");
    for c in cells {
        let _ = write!(head, "  {:<cw$}", c.name);
        let _ = write!(kern, "  {:<cw$}", c.kernel);
    }
    println!("{head}\n{kern}");
    for n in names {
        let mut line = format!("{n:<w$}");
        for c in cells {
            let v = match c.checks.get(n) {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None if c.host && n.starts_with(IPVS_PREFIX) => "n/a (no IP_VS)",
                None => "not run",
            };
            let _ = write!(line, "  {v:<cw$}");
        }
        println!("{line}");
    }
    for c in cells.iter().filter(|c| c.error.is_some()) {
        println!(
            "{}: could not run: {}",
            c.name,
            c.error.as_deref().unwrap_or("")
        );
    }
}

pub fn run(_extra: &[String]) -> anyhow::Result<()> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "inspector"]))?;
    let bin = std::fs::canonicalize("target/release/inspector")?;
    let suites = Suites {
        smoke: test_binary("smoke")?,
        ipvs: test_binary("ipvs")?,
    };
    let cells = vec![
        host_cell("host (auto: global)", &suites.smoke, &bin, ""),
        host_cell("host (--attach tcx)", &suites.smoke, &bin, "tcx"),
        host_cell("host (--attach tc)", &suites.smoke, &bin, "tc"),
        vm_cell(&bin, &suites),
    ];
    print_table(&cells);
    // Every check must have run and passed in every cell (IPVS ones only in the VM).
    let all: std::collections::BTreeSet<&String> =
        cells.iter().flat_map(|c| c.checks.keys()).collect();
    let missing = |c: &Cell| {
        all.iter()
            .any(|n| !(c.checks.contains_key(*n) || c.host && n.starts_with(IPVS_PREFIX)))
    };
    let bad: Vec<&str> = cells
        .iter()
        .filter(|c| {
            c.error.is_some()
                || c.checks.is_empty()
                || missing(c)
                || c.checks.values().any(|ok| !ok)
        })
        .map(|c| c.name.as_str())
        .collect();
    if !bad.is_empty() {
        bail!("kernel matrix: failed in {}", bad.join(", "));
    }
    Ok(())
}
