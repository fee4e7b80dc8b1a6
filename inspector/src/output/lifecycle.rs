//! `lifecycle` records: namespaces and links appearing and disappearing, named with their
//! owner, and the runtimes' own container events.
use std::io::Write;

use super::Printer;
use crate::identity::lifecycle::Event;

pub fn render<W: Write>(p: &mut Printer<W>, e: &Event) -> std::io::Result<()> {
    if p.json() {
        return p.record("lifecycle", e);
    }
    p.line(&line(e))
}

/// One line for people.
#[must_use]
pub fn line(e: &Event) -> String {
    let who = match &e.workload {
        Some(w) => format!("({})", w.name.as_deref().unwrap_or("?")),
        None => "(no workload)".to_owned(),
    };
    match e.object {
        "container" => format!("container {who} {}", e.action),
        "netns" => format!(
            "netns {} (inode {}) {} {who}",
            e.netns_name.as_deref().unwrap_or("?"),
            e.netns.unwrap_or_default(),
            e.action
        ),
        _ => format!(
            "{} {}/{} (ifindex {}){} {} {who}",
            e.link_kind.as_deref().unwrap_or("link"),
            e.netns_name.as_deref().unwrap_or("?"),
            e.ifname.as_deref().unwrap_or("?"),
            e.ifindex.unwrap_or_default(),
            e.peer
                .as_ref()
                .map(|p| format!(" <-> {p}"))
                .unwrap_or_default(),
            e.action
        ),
    }
}
