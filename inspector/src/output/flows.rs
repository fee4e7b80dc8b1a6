//! `flow` records: one line per flow per hook (table: with a SERVICE -> BACKEND column when
//! any flow went to a Service), and the `snapshot` marker that starts each refresh.
use std::io::Write;

use serde::Serialize;

use super::{Columns, Printer, labelled};
use crate::session::{Flow, FlowTable, records::ServiceOf};

/// Where one refresh of `flows` starts (`type: "snapshot"`, JSON only).
#[derive(Serialize)]
pub struct SnapshotMark {
    /// 1, 2, ... in refresh order; the final snapshot (at the end of the run) is marked.
    pub seq: u64,
    pub time_unix_ns: u64,
    #[serde(rename = "final")]
    pub last: bool,
    /// How many records this snapshot has.
    pub records: usize,
}

/// `shop/web:http -> web-2 (198.18.30.4:8080)`, or "" for flows not to a Service.
#[must_use]
pub fn service_label(s: Option<&ServiceOf>) -> String {
    let Some(s) = s else {
        return String::new();
    };
    let spn = crate::services::spn(&s.service.namespace, &s.service.name, &s.service.port_name);
    match &s.backend.workload {
        Some(w) => format!("{spn} -> {w} ({})", s.backend.endpoint),
        None => format!("{spn} -> {}", s.backend.endpoint),
    }
}

/// The `snapshot` marker (JSON only: a table refresh clears the screen instead).
pub fn snapshot<W: Write>(p: &mut Printer<W>, snap: &SnapshotMark) -> std::io::Result<()> {
    if p.json() {
        p.record("snapshot", snap)?;
    }
    Ok(())
}

/// Flow records, each named as it is written: `flow` lines in JSON; a table otherwise,
/// its widths measured in a first pass (`refresh`: the screen is cleared first on a
/// terminal, and a blank line follows).
///
/// # Errors
/// Writing fails, or the session cannot name the flows.
pub fn render<W: Write>(
    p: &mut Printer<W>,
    flows: &FlowTable<'_>,
    refresh: bool,
) -> anyhow::Result<()> {
    if p.json() {
        return flows.each(|f| Ok::<(), anyhow::Error>(p.record("flow", &f)?));
    }
    let svc_col = flows.any_service();
    let mut header = vec![
        "NETNS", "IFACE", "DIR", "PROTO", "SRC", "DST", "PACKETS", "BYTES", "FLAGS",
    ];
    if svc_col {
        header.push("SERVICE -> BACKEND");
    }
    let mut cols = Columns::new(&header);
    flows.each(|f| {
        cols.measure(&row(&f, svc_col));
        Ok::<(), anyhow::Error>(())
    })?;
    if refresh && super::stdout_is_tty() {
        p.text("\x1b[2J\x1b[H")?;
    }
    p.text(&cols.header())?;
    flows.each(|f| Ok::<(), anyhow::Error>(p.text(&cols.line(&row(&f, svc_col)))?))?;
    if refresh {
        p.line("")?;
    }
    Ok(())
}

/// One flow's cells.
fn row(f: &Flow, svc_col: bool) -> Vec<String> {
    let r = &f.rec;
    let flags: Vec<String> = [
        r.hdr.icmp_name().unwrap_or_default(),
        r.tcp_flags.clone(),
        r.anomalies.clone(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    let mut row = vec![
        r.netns_name.clone(),
        r.ifname.clone(),
        r.direction.into(),
        r.hdr.proto.to_string(),
        labelled(r.hdr.src_str(), f.src_endpoint.as_ref()),
        labelled(r.hdr.dst_str(), f.dst_endpoint.as_ref()),
        r.packets.to_string(),
        r.bytes.to_string(),
        flags.join(" "),
    ];
    if svc_col {
        row.push(service_label(f.service.as_ref()));
    }
    row
}
