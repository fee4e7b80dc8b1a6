//! The main job on a fresh machine: the embedded four-mode lab (Docker's bridge, container,
//! host and none modes, a published port, an outside client) with the inspector attached to
//! every hop, bounded traffic from processes running as the lab's workloads (busybox
//! httpd/wget/ping, each in its workload's namespace and cgroup), each flow's path with
//! per-hop counters and who is at each end, the drops; then a Kubernetes node's Services
//! behind kube-proxy's rules, followed by `path` from a pod, from outside, and to a Service
//! without endpoints. Everything is removed at the end, also on failure or Ctrl-C.
//!
//! What it finds is handed to `report` as it goes ([`Step`]); the front-end renders it.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{LabError, LabSpec, Plan, spec};
use crate::{
    identity::lab_records::LabRecord,
    net::Proto,
    services::read::NodeServices,
    session::{self, Session, SessionError, path::PathReport},
    sys::signals::StopFlag,
};

/// The demo lab's name (its namespaces are `insp-demo-*`).
pub const DEMO_LAB: &str = "insp-demo";
/// The Kubernetes-node part of the demo (Services behind kube-proxy's rules).
pub const DEMO_KUBE_LAB: &str = "insp-demo-k";
const BUSYBOX: &str = "/bin/busybox";

/// What the demo shows, as it happens.
pub enum Step {
    /// A line of progress for people (stderr).
    Note(String),
    /// The four-mode lab's flows as paths, the drops, the kernel's counters.
    Flows(Box<(Vec<session::Path>, Vec<session::Drop>, session::Stats)>),
    /// The Kubernetes node's Services.
    Services(Vec<NodeServices>),
    /// One `path` question (its command line, for people) and its answer.
    Probe(String, Box<PathReport>),
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "the demo runs its workloads with {BUSYBOX} (Debian's busybox-static): install it with \
         `cargo xtask setup`"
    )]
    NoBusybox,
    #[error("interrupted; the demo lab was removed")]
    Interrupted,
    #[error("building the demo lab: {0}")]
    Lab(#[from] LabError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("reading the Services of {0}: {1}")]
    Services(String, crate::services::ServicesError),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io { what, source }
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

/// A busybox command as one of the lab's workloads (`inspector lab run`).
fn as_workload(lab: &str, w: &str, args: &[&str]) -> Result<Command, DemoError> {
    let mut c = Command::new(std::env::current_exe().map_err(io("finding this program"))?);
    c.args(["lab", "run", lab, w, "--", BUSYBOX]).args(args);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    Ok(c)
}

/// `busybox wget` as a workload, bounded by busybox `timeout`.
fn fetch(lab: &str, w: &str, url: &str) -> Result<bool, DemoError> {
    let args = [
        "timeout",
        "5",
        BUSYBOX,
        "wget",
        "-q",
        "-O",
        "/dev/null",
        url,
    ];
    Ok(as_workload(lab, w, &args)?
        .status()
        .map_err(io("running busybox wget"))?
        .success())
}

fn serve(lab: &str, ws: &[(&str, &str)], www: &str) -> Result<Servers, DemoError> {
    let mut s = Servers(Vec::new());
    for (w, addr) in ws {
        let c = as_workload(lab, w, &["httpd", "-f", "-p", addr, "-h", www])?
            .spawn()
            .map_err(io("starting busybox httpd"))?;
        s.0.push(c);
    }
    Ok(s)
}

/// Removes the demo's labs left by `--keep` or by a demo that was killed; how many
/// namespaces went.
#[must_use]
pub fn clean() -> usize {
    super::remove_stale(DEMO_LAB) + super::remove_stale(DEMO_KUBE_LAB)
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "FAILED" }
}

fn plan(text: &str, name: &str) -> Result<Plan, LabError> {
    let mut s = LabSpec::from_toml(text)?;
    name.clone_into(&mut s.name);
    s.plan()
}

/// Runs the demo; `keep` leaves the four-mode lab up (and skips the Kubernetes part).
pub fn run(keep: bool, stop: &StopFlag, report: &mut dyn FnMut(Step)) -> Result<(), DemoError> {
    let check = || {
        if stop.raised() {
            Err(DemoError::Interrupted)
        } else {
            Ok(())
        }
    };
    let _ = clean();
    if !Path::new(BUSYBOX).exists() {
        return Err(DemoError::NoBusybox);
    }
    let plan = plan(spec::DEFAULT_SPEC, DEMO_LAB)?;
    let rec = super::up(&plan)?;
    let up = super::LabGuard(vec![rec.clone()]);
    report(Step::Note(format!(
        "demo lab up: {} (namespaces {})",
        rec.workloads
            .iter()
            .map(|w| format!("{} {}", w.name, w.network_mode))
            .collect::<Vec<_>>()
            .join(", "),
        rec.namespaces.join(", ")
    )));
    let www = std::env::temp_dir().join(format!("inspector-demo-www-{}", std::process::id()));
    std::fs::create_dir_all(&www).map_err(io("creating the web root"))?;
    std::fs::write(www.join("index.html"), "hello from the inspector demo\n")
        .map_err(io("writing the web root"))?;
    let result = four_modes(&plan, &rec, &www, &check, report);
    let kube_result = result.and_then(|()| {
        let n = rec.namespaces.len();
        if keep {
            let _ = up.keep();
            report(Step::Note(format!(
                "demo lab kept ({n} namespaces): try `inspector explain web`, `inspector \
                 topology`; remove it with `inspector demo --clean` (the Kubernetes part runs \
                 without --keep; build it with `inspector lab up --kube`)"
            )));
            return Ok(());
        }
        drop(up);
        report(Step::Note(format!("demo lab removed ({n} namespaces)")));
        check()?;
        kube(&www, &check, report)
    });
    let _ = std::fs::remove_dir_all(&www);
    kube_result
}

/// The four-mode part: traffic as the workloads, then paths, drops and counters.
fn four_modes(
    plan: &Plan,
    rec: &LabRecord,
    www: &Path,
    check: &dyn Fn() -> Result<(), DemoError>,
    report: &mut dyn FnMut(Step),
) -> Result<(), DemoError> {
    let (s, _) = Session::start(&session::Options {
        netns: rec.namespaces.clone(),
        lo: true,
        ..session::Options::default()
    })?;
    report(Step::Note(format!(
        "attached to {} interfaces; driving traffic as the workloads",
        s.attached()
    )));
    check()?;
    let www_s = www.display().to_string();
    let servers = serve(
        DEMO_LAB,
        &[("web", "80"), ("sidecar", "81"), ("batch", "127.0.0.1:80")],
        &www_s,
    )?;
    let web = plan.workload("web")?.addr.unwrap_or(plan.gateway);
    let ext = plan.external.clone().ok_or_else(|| {
        DemoError::Lab(LabError::Spec(
            "the demo spec has no external client".into(),
        ))
    })?;
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
    let web_s = web.to_string();
    let ping = as_workload(DEMO_LAB, "client", &["ping", "-c", "2", "-W", "1", &web_s])?
        .status()
        .map_err(io("running busybox ping"))?
        .success();
    done.push(format!("client ping web {}", ok(ping)));
    let dnat = crate::sys::netns::command_in(&crate::sys::netns::named(&ext.netns), BUSYBOX)
        .map_err(io("entering the outside client"))?
        .args(["timeout", "5", BUSYBOX, "wget", "-q", "-O", "/dev/null"])
        .arg(format!("http://{}:8080/", ext.node_ip))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io("running busybox wget outside"))?
        .success();
    done.push(format!("outside->node:8080 (DNAT to web) {}", ok(dnat)));
    // Nothing listens outside: refused, after MASQUERADE on the way out.
    let out = fetch(DEMO_LAB, "web", &format!("http://{}:9/", ext.ip))?;
    done.push(format!(
        "web->outside:9 {}",
        if out {
            "answered?"
        } else {
            "refused, as expected"
        }
    ));
    // Nobody listens on UDP 9 outside either: the kernel drops these (reason NO_SOCKET).
    let client_ns = crate::sys::netns::named(&plan.workload("client")?.netns);
    crate::traffic::udp_send(
        &client_ns,
        std::net::SocketAddr::new(ext.ip.into(), 9),
        5,
        64,
    )
    .map_err(io("sending UDP to the outside client"))?;
    done.push("client->outside udp:9 x5 (closed port)".into());
    report(Step::Note(format!("traffic done: {}", done.join(", "))));
    drop(servers);
    check()?;
    settle(&s);
    report(Step::Flows(Box::new((s.paths()?, s.drops()?, s.stats()?))));
    Ok(())
}

/// The Kubernetes-node part: a Service with three pods behind kube-proxy's iptables rules,
/// followed by `path` from a pod (a `ClusterIP`), from outside the node (a `NodePort`,
/// masqueraded) and to a Service without endpoints (refused, REJECT named).
fn kube(
    www: &Path,
    check: &dyn Fn() -> Result<(), DemoError>,
    report: &mut dyn FnMut(Step),
) -> Result<(), DemoError> {
    let plan = plan(spec::KUBE_SPEC, DEMO_KUBE_LAB)?;
    let rec = super::up(&plan)?;
    let n = rec.namespaces.len();
    report(Step::Note(format!(
        "Kubernetes demo lab up: pods web-0, web-1, web-2, client behind kube-proxy's \
         iptables rules (namespaces {})",
        rec.namespaces.join(", ")
    )));
    let up = super::LabGuard(vec![rec]);
    let www_s = www.display().to_string();
    let servers = serve(
        DEMO_KUBE_LAB,
        &[("web-0", "8080"), ("web-1", "8080"), ("web-2", "8080")],
        &www_s,
    )?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fetch(DEMO_KUBE_LAB, "client", "http://198.18.32.10/")? && Instant::now() < deadline {}
    check()?;
    let node = crate::identity::lab_records::node_ns(DEMO_KUBE_LAB);
    let services = crate::services::read::node_services(Some(DEMO_KUBE_LAB))
        .map_err(|e| DemoError::Services(node.clone(), e))?;
    report(Step::Services(services));
    let client = format!("{DEMO_KUBE_LAB}/client");
    let ext = format!("{DEMO_KUBE_LAB}-ext");
    for (src, dst) in [
        (client.as_str(), "shop/web"),
        (ext.as_str(), "198.18.31.1:30080"),
        (client.as_str(), "shop/empty:80"),
    ] {
        check()?;
        let r = session::path::run(&session::path::PathOptions {
            src: src.into(),
            dst: dst.into(),
            src_pick: None,
            dst_pick: None,
            proto: Proto::Tcp,
            watch: false,
            timeout: Duration::from_secs(3),
            identity: crate::identity::tracker::Options::default(),
            ready_file: None,
        })?;
        report(Step::Probe(
            format!("inspector path {src} {dst}"),
            Box::new(r),
        ));
    }
    drop(servers);
    drop(up);
    report(Step::Note(format!(
        "Kubernetes demo lab removed ({n} namespaces)"
    )));
    Ok(())
}

/// Waits (bounded) until the flow counters stop changing: the last ACKs and replies are in.
fn settle(s: &Session) {
    let mut last = s.total_packets().unwrap_or(0);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = s.total_packets().unwrap_or(0);
        if now == last {
            return;
        }
        last = now;
    }
}
