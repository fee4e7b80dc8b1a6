//! `inspector explain NAME|ID`: a container's, pod's or lab workload's network mode with its
//! live kernel objects, and the hops of its packets (see `crate::explain`).
use anyhow::Context as _;

use super::common::IdentityArgs;
use crate::{
    explain::{self, Explanation},
    output::{self, Format},
    probe::preflight,
    topology::{self, NsidCache},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name, id or id prefix (4+ characters) of a container, pod (namespace/name) or lab
    /// workload.
    pub workload: String,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    let tracker = a.identity.tracker();
    let w = tracker
        .identity
        .live()
        .iter()
        .find(|w| w.name == a.workload || w.id == a.workload)
        .or_else(|| tracker.identity.find(&a.workload))
        .cloned()
        .with_context(|| {
            format!(
                "no container, pod or lab workload is called '{}' (list them with `inspector topology`)",
                a.workload
            )
        })?;
    let topo = topology::scan(&mut NsidCache::default());
    let ex = explain::explain(&tracker.identity, &topo, &w);
    match fmt {
        Format::Json => output::json_line(&ex)?,
        Format::Table | Format::Dot => print(&ex),
    }
    Ok(())
}

fn print(ex: &Explanation) {
    let w = &ex.workload;
    println!(
        "{} {} (id {}, {} {})",
        w.kind.map_or("", |k| k.as_str()),
        w.name,
        crate::identity::short_id(&w.id),
        w.runtime,
        crate::identity::mode_label(w.network_mode.as_deref())
    );
    println!();
    println!("{}", wrap(&ex.mode, 96, ""));
    if !w.routes.is_empty() {
        println!();
        println!("routes:");
        for r in w.routes.iter().filter(|r| !r.dst.starts_with("fe80")) {
            println!(
                "  {}{}{}",
                r.dst,
                r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                r.dev
                    .as_ref()
                    .map(|d| format!(" dev {d}"))
                    .unwrap_or_default()
            );
        }
    }
    if !ex.rules.is_empty() {
        println!();
        println!("rules that name it (iptables-save of the bridge's namespace):");
        for r in &ex.rules {
            println!("  {r}");
        }
    }
    for p in &ex.paths {
        println!();
        println!("path {}:", p.name);
        println!("{}", wrap(&p.summary, 96, "  "));
        for (i, h) in p.hops.iter().enumerate() {
            println!(
                "  {:>2}. {:<34} {:<7} {}",
                i + 1,
                format!("{}/{} ({})", h.netns_name, h.ifname, h.ifindex),
                h.direction,
                h.note
            );
        }
        for r in &p.rules {
            println!("      rule  {r}");
        }
    }
}

fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() + word.len() + 1 > width && !line.trim().is_empty() {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(indent);
        }
        line.push_str(word);
        line.push(' ');
    }
    out.push_str(line.trim_end());
    out
}
