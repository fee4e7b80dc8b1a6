//! The `cleanup` record (`inspector cleanup`): one per filter or qdisc removed (or, with
//! `--dry-run`, that would be).
use std::io::Write;

use super::{Printer, Table};
use crate::probe::cleanup::Removed;

pub fn render<W: Write>(
    p: &mut Printer<W>,
    removed: &[Removed],
    dry_run: bool,
) -> std::io::Result<()> {
    if p.json() {
        for r in removed {
            p.record("cleanup", r)?;
        }
        return Ok(());
    }
    if removed.is_empty() {
        return p.line("nothing of ours left behind");
    }
    let mut t = Table::new(&[
        "NETNS", "IFINDEX", "WHAT", "HOOK", "HANDLE", "PROGRAM", "PROG ID",
    ]);
    for r in removed {
        t.row(vec![
            r.netns.clone(),
            r.ifindex.to_string(),
            r.what.into(),
            r.hook.into(),
            if r.handle == 0 {
                "-".into()
            } else {
                format!("{:#x}", r.handle)
            },
            if r.program.is_empty() {
                "-".into()
            } else {
                r.program.clone()
            },
            if r.prog_id == 0 {
                "-".into()
            } else {
                r.prog_id.to_string()
            },
        ]);
    }
    p.text(&t.render())?;
    p.line(&format!(
        "{} {}",
        removed.len(),
        if dry_run {
            "would be removed (dry run)"
        } else {
            "removed"
        }
    ))
}
