//! The `explain` record: a workload's network mode with its live kernel objects and the
//! hops of its packets.
use std::io::Write;

use super::Printer;
use crate::explain::Explanation;

pub fn render<W: Write>(p: &mut Printer<W>, ex: &Explanation) -> std::io::Result<()> {
    if p.json() {
        return p.record("explain", ex);
    }
    let w = &ex.workload;
    p.line(&format!(
        "{} {} (id {}, {} {})",
        w.kind.map_or("", |k| k.as_str()),
        w.name,
        crate::identity::short_id(&w.id),
        w.runtime,
        crate::identity::mode_label(w.network_mode.as_deref())
    ))?;
    p.line("")?;
    p.line(&wrap(&ex.mode, 96, ""))?;
    if !w.routes.is_empty() {
        p.line("")?;
        p.line("routes:")?;
        for r in w.routes.iter().filter(|r| !r.dst.starts_with("fe80")) {
            p.line(&format!("  {}", super::topology::route_text(r)))?;
        }
    }
    if !ex.rules.is_empty() {
        p.line("")?;
        p.line("rules that name it (iptables-save of the bridge's namespace):")?;
        for r in &ex.rules {
            p.line(&format!("  {r}"))?;
        }
    }
    for path in &ex.paths {
        p.line("")?;
        p.line(&format!("path {}:", path.name))?;
        p.line(&wrap(&path.summary, 96, "  "))?;
        for (i, h) in path.hops.iter().enumerate() {
            p.line(&format!(
                "  {:>2}. {:<34} {:<7} {}",
                i + 1,
                format!("{}/{} ({})", h.netns_name, h.ifname, h.ifindex),
                h.direction,
                h.note
            ))?;
        }
        for r in &path.rules {
            p.line(&format!("      rule  {r}"))?;
        }
    }
    Ok(())
}

/// Words of `text` in lines at most `width` wide, each starting with `indent`.
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
