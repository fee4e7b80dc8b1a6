//! `inspector demo`: the main job on a fresh machine. Builds the four-mode lab (Docker's
//! bridge, container, host and none modes, a published port, an outside client), attaches
//! to every hop, drives bounded traffic from processes running as the lab's workloads
//! (busybox httpd/wget/ping, one in each workload's namespace and cgroup), prints the path
//! each flow took with per-hop counters and who is at each end, and removes the lab.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::common::{self, FilterArgs};
use crate::{
    flows::{filter::Filter, path},
    identity::lab::LabRecord,
    lab::{
        modes,
        spec::{DEFAULT_SPEC, KUBE_SPEC, LabSpec},
    },
    output::Format,
    probe::{follow::Follower, preflight},
    traffic,
};

/// The demo lab's name (its namespaces are `insp-demo-*`).
pub const DEMO_LAB: &str = "insp-demo";
/// The Kubernetes-node part of the demo (Services behind kube-proxy's rules).
pub const DEMO_KUBE_LAB: &str = "insp-demo-k";
const BUSYBOX: &str = "/bin/busybox";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Leave the lab in place afterwards, to explore it with `topology`, `explain`, `flows`.
    #[arg(long, conflicts_with = "clean")]
    pub keep: bool,
    /// Only remove a lab left by `--keep` (or by a demo that was killed).
    #[arg(long)]
    pub clean: bool,
}

/// Removes the demo lab on drop (unless kept), even when the demo fails half-way.
struct Up(Option<LabRecord>);
impl Drop for Up {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            modes::down(&r);
        }
    }
}

/// Child processes (servers) killed on drop.
struct Servers(Vec<Child>);
impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn as_workload(lab: &str, w: &str, args: &[&str]) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["lab", "run", lab, w, "--", BUSYBOX]).args(args);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    Ok(c)
}

/// `busybox wget` as a workload, bounded by busybox `timeout`.
fn fetch(lab: &str, w: &str, url: &str) -> anyhow::Result<bool> {
    Ok(as_workload(
        lab,
        w,
        &[
            "timeout",
            "5",
            BUSYBOX,
            "wget",
            "-q",
            "-O",
            "/dev/null",
            url,
        ],
    )?
    .status()?
    .success())
}

fn remove_stale() -> usize {
    let mut n = 0;
    for lab in [DEMO_LAB, DEMO_KUBE_LAB] {
        if let Ok(r) = LabRecord::load(lab) {
            modes::down(&r);
            n += r.namespaces.len();
        }
    }
    for ns in crate::sys::netns::list_with_prefix(&format!("{DEMO_LAB}-")) {
        let _ = crate::sys::netns::delete(&ns);
        n += 1;
    }
    n
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    // Ctrl-C must not skip the clean-up: the flag is checked between steps and the lab is
    // removed when `up` goes out of scope.
    let stop = common::stop_flag()?;
    let check = || -> anyhow::Result<()> {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("interrupted; the demo lab was removed");
        }
        Ok(())
    };
    let stale = remove_stale();
    if a.clean {
        eprintln!("inspector: removed the demo lab ({stale} namespaces)");
        return Ok(());
    }
    if !Path::new(BUSYBOX).exists() {
        bail!(
            "the demo runs its workloads with {BUSYBOX} (Debian's busybox-static): install it with `cargo xtask setup`"
        );
    }
    let mut spec = LabSpec::from_toml(DEFAULT_SPEC).map_err(anyhow::Error::msg)?;
    spec.name = DEMO_LAB.into();
    let plan = spec.plan().map_err(anyhow::Error::msg)?;
    let mut up = Up(Some(modes::up(&plan).context("building the demo lab")?));
    let rec = up.0.clone().context("lab record")?;
    eprintln!(
        "inspector: demo lab up: {} (namespaces {})",
        rec.workloads
            .iter()
            .map(|w| format!("{} {}", w.name, w.network_mode))
            .collect::<Vec<_>>()
            .join(", "),
        rec.namespaces.join(", ")
    );
    let www = std::env::temp_dir().join(format!("inspector-demo-www-{}", std::process::id()));
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "hello from the inspector demo\n")?;
    let www_s = www.display().to_string();

    let args = FilterArgs {
        netns: rec.namespaces.clone(),
        lo: true,
        quiet: true,
        ..FilterArgs::default()
    };
    let (f, _) = common::start(&args, false)?;
    eprintln!(
        "inspector: attached to {} interfaces; driving traffic as the workloads",
        f.probe.attached().count()
    );
    check()?;

    let mut servers = Servers(Vec::new());
    for (w, addr) in [("web", "80"), ("sidecar", "81"), ("batch", "127.0.0.1:80")] {
        servers.0.push(
            as_workload(DEMO_LAB, w, &["httpd", "-f", "-p", addr, "-h", &www_s])?
                .spawn()
                .context("starting busybox httpd")?,
        );
    }
    let web = plan.workloads[0].addr.context("web address")?;
    let (ext_ns, _, node_ext, ext_ip, _) = plan.external.clone().context("external")?;
    // The servers need a moment to listen: retry the first request (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first = false;
    while !first && Instant::now() < deadline {
        first = fetch(DEMO_LAB, "client", &format!("http://{web}/"))?;
    }
    let mut done = vec![format!("client->web:80 {}", ok(first))];
    for (w, url, what) in [
        ("client", format!("http://{web}:81/"), "client->sidecar:81"),
        ("agent", format!("http://{web}/"), "agent(host)->web:80"),
        (
            "batch",
            "http://127.0.0.1/".to_owned(),
            "batch(none)->lo:80",
        ),
    ] {
        done.push(format!("{what} {}", ok(fetch(DEMO_LAB, w, &url)?)));
    }
    let ping = as_workload(
        DEMO_LAB,
        "client",
        &["ping", "-c", "2", "-W", "1", &web.to_string()],
    )?
    .status()?
    .success();
    done.push(format!("client ping web {}", ok(ping)));
    let dnat = crate::sys::netns::command_in(&crate::sys::netns::named(&ext_ns), BUSYBOX)?
        .args(["timeout", "5", BUSYBOX, "wget", "-q", "-O", "/dev/null"])
        .arg(format!("http://{node_ext}:8080/"))
        .stderr(Stdio::null())
        .status()?
        .success();
    done.push(format!("outside->node:8080 (DNAT to web) {}", ok(dnat)));
    // Nothing listens outside: refused, after MASQUERADE on the way out.
    let out = fetch(DEMO_LAB, "web", &format!("http://{ext_ip}:9/"))?;
    done.push(format!(
        "web->outside:9 {}",
        if out {
            "answered?"
        } else {
            "refused, as expected"
        }
    ));
    // Nobody listens on UDP 9 outside either: the kernel drops these (reason NO_SOCKET).
    traffic::udp_send(
        &crate::sys::netns::named(&format!("{DEMO_LAB}-client")),
        std::net::SocketAddr::new(ext_ip.into(), 9),
        5,
        64,
    )?;
    done.push("client->outside udp:9 x5 (closed port)".into());
    eprintln!("inspector: traffic done: {}", done.join(", "));
    drop(servers);
    check()?;
    settle(&f);
    let recs = super::flows::records(&f, &Filter::default())?;
    super::flows::print_paths(&f, &path::stitch(&recs), fmt)?;
    let settings = common::Settings {
        filter: Filter::default(),
        selection: f.selection.clone(),
        pinned_ifindex: None,
    };
    super::flows::print_drops(&f, &settings, fmt)?;
    super::flows::print_stats(&f, fmt)?;
    drop(f);
    let n = rec.namespaces.len();
    if a.keep {
        let _ = std::fs::remove_dir_all(&www);
        up.0 = None;
        eprintln!(
            "inspector: demo lab kept ({n} namespaces): try `inspector explain web`, `inspector \
             topology`; remove it with `inspector demo --clean` (the Kubernetes part runs \
             without --keep; build it with `inspector lab up --kube iptables`)"
        );
        return Ok(());
    }
    drop(up);
    eprintln!("inspector: demo lab removed ({n} namespaces)");
    check()?;
    kube(fmt, &www_s, &check)?;
    let _ = std::fs::remove_dir_all(&www);
    Ok(())
}

/// The Kubernetes-node part: a Service with three pods behind kube-proxy's iptables rules,
/// followed by `inspector path` from a pod (a `ClusterIP`), from outside the node (a `NodePort`,
/// masqueraded) and to a Service without endpoints (refused, REJECT named).
fn kube(fmt: Format, www: &str, check: &dyn Fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut spec = LabSpec::from_toml(KUBE_SPEC).map_err(anyhow::Error::msg)?;
    spec.name = DEMO_KUBE_LAB.into();
    let plan = spec.plan().map_err(anyhow::Error::msg)?;
    let up = Up(Some(
        modes::up(&plan).context("building the Kubernetes demo lab")?,
    ));
    let rec = up.0.clone().context("lab record")?;
    eprintln!(
        "inspector: Kubernetes demo lab up: pods web-0, web-1, web-2, client behind kube-proxy's iptables rules (namespaces {})",
        rec.namespaces.join(", ")
    );
    let mut servers = Servers(Vec::new());
    for w in ["web-0", "web-1", "web-2"] {
        servers.0.push(
            as_workload(DEMO_KUBE_LAB, w, &["httpd", "-f", "-p", "8080", "-h", www])?
                .spawn()
                .context("starting busybox httpd")?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fetch(DEMO_KUBE_LAB, "client", "http://198.18.32.10/")? && Instant::now() < deadline {}
    check()?;
    let me = std::env::current_exe()?;
    let out = |args: &[&str]| -> anyhow::Result<()> {
        let mut c = Command::new(&me);
        if fmt == Format::Json {
            c.args(["-o", "json"]);
        }
        let st = c.args(args).status().context("running inspector")?;
        if !st.success() {
            bail!("`inspector {}` failed", args.join(" "));
        }
        Ok(())
    };
    out(&["services", "--lab", DEMO_KUBE_LAB])?;
    let client = format!("{DEMO_KUBE_LAB}/client");
    let ext = format!("{DEMO_KUBE_LAB}-ext");
    for args in [
        vec!["path", client.as_str(), "shop/web"],
        vec!["path", ext.as_str(), "198.18.31.1:30080"],
        vec!["path", client.as_str(), "shop/empty:80"],
    ] {
        check()?;
        if fmt != Format::Json {
            println!();
            println!("$ inspector {}", args.join(" "));
        }
        out(&args)?;
    }
    drop(servers);
    drop(up);
    eprintln!(
        "inspector: Kubernetes demo lab removed ({} namespaces)",
        rec.namespaces.len()
    );
    Ok(())
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "FAILED" }
}

/// Waits (bounded) until the flow counters stop changing: the last ACKs and replies are in.
fn settle(f: &Follower) {
    let total = |f: &Follower| {
        f.probe
            .flows()
            .map_or(0, |v| v.iter().map(|(_, s)| s.packets).sum::<u64>())
    };
    let mut last = total(f);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = total(f);
        if now == last {
            return;
        }
        last = now;
    }
}
