//! The `status` record (`inspector status`): the node's facts, then one row per kernel
//! feature with what is lost without it.
use std::io::Write;

use super::{Printer, Table};
use crate::session::status::Status;

pub fn render<W: Write>(p: &mut Printer<W>, s: &Status) -> std::io::Result<()> {
    if p.json() {
        return p.record("status", s);
    }
    let runtimes = if s.runtimes.is_empty() {
        "none found".to_owned()
    } else {
        s.runtimes.join(", ")
    };
    let leftovers = if s.leftovers == 0 {
        "none".to_owned()
    } else {
        format!(
            "{} filters of a killed run: `inspector cleanup` removes them",
            s.leftovers
        )
    };
    for (k, v) in [
        ("kernel", s.kernel.as_str()),
        ("lockdown", &s.lockdown),
        ("privileges", &s.privileges),
        ("cgroup", &s.cgroup),
        ("attach", &s.attach),
        ("runtimes", &runtimes),
        ("kube-proxy", &s.kube_proxy),
        ("leftovers", &leftovers),
    ] {
        p.line(&format!("{k:<11} {v}"))?;
    }
    p.line("")?;
    let mut t = Table::new(&["FEATURE", "OK", "FOUND", "WITHOUT IT"]);
    for f in &s.features {
        t.row(vec![
            f.name.clone(),
            if f.ok { "yes" } else { "no" }.into(),
            f.detail.clone(),
            f.without.clone(),
        ]);
    }
    p.text(&t.render())
}
