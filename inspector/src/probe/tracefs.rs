//! tracefs: where classic tracepoints are described. The drop program needs the layout of the
//! `skb:kfree_skb` record (read from its format file, never assumed) and aya needs the
//! tracepoint's id. If tracefs is not mounted we mount it at its standard place and leave it
//! there (as systemd does on most distributions).
use std::{collections::BTreeMap, path::PathBuf};

use super::ProbeError;

/// Where tracefs should be. Overridable (`INSPECTOR_TRACEFS`) only so the test of the "no
/// tracefs" message can point it somewhere that cannot be mounted.
fn tracefs_path() -> PathBuf {
    std::env::var_os("INSPECTOR_TRACEFS")
        .map_or_else(|| "/sys/kernel/tracing".into(), PathBuf::from)
}

fn populated(p: &std::path::Path) -> bool {
    p.join("events").is_dir()
}

/// Returns a mounted tracefs, mounting it if needed.
pub fn ensure_mounted() -> Result<PathBuf, ProbeError> {
    let p = tracefs_path();
    if populated(&p) {
        return Ok(p);
    }
    let legacy = PathBuf::from("/sys/kernel/debug/tracing");
    if std::env::var_os("INSPECTOR_TRACEFS").is_none() && populated(&legacy) {
        return Ok(legacy);
    }
    let mounted = nix::mount::mount(
        Some("tracefs"),
        &p,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    match mounted {
        Ok(()) if populated(&p) => Ok(p),
        Ok(()) => Err(ProbeError::NoTracefs {
            path: p,
            error: std::io::Error::other("mounted, but it has no events/"),
        }),
        Err(e) => Err(ProbeError::NoTracefs {
            path: p,
            error: std::io::Error::from_raw_os_error(e as i32),
        }),
    }
}

/// The `skb:kfree_skb` record: offsets of `skbaddr` and `reason`, and the reason names.
pub struct KfreeSkbFormat {
    pub off_skbaddr: u32,
    pub off_reason: u32,
    pub off_location: u32,
    pub reasons: BTreeMap<u32, String>,
}

pub fn kfree_skb_format(tracefs: &std::path::Path) -> Result<KfreeSkbFormat, ProbeError> {
    let path = tracefs.join("events/skb/kfree_skb/format");
    if super::fault::hook_missing("kfree_skb") {
        return Err(ProbeError::TracepointFormat {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such tracepoint (fault injected)",
            ),
        });
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(source) => return Err(ProbeError::TracepointFormat { path, source }),
    };
    parse_format(&text).ok_or(ProbeError::TracepointLayout(path))
}

fn field_offset(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .find(|l| {
            l.contains("field:")
                && l.split(';')
                    .next()
                    .is_some_and(|f| f.trim_end().ends_with(&format!(" {name}")))
        })?
        .split(';')
        .find_map(|part| part.trim().strip_prefix("offset:"))?
        .parse()
        .ok()
}

fn parse_format(text: &str) -> Option<KfreeSkbFormat> {
    let off_skbaddr = field_offset(text, "skbaddr")?;
    // No reason before Linux 5.17: drops are then counted with none.
    let off_reason =
        field_offset(text, "reason").unwrap_or(inspector_common::config::NO_DROP_REASON);
    let off_location = field_offset(text, "location")?;
    // __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, ...)
    let mut reasons = BTreeMap::new();
    if let Some(sym) = text.split("__print_symbolic(REC->reason,").nth(1) {
        for item in sym.split('{').skip(1) {
            let Some((num, rest)) = item.split_once(',') else {
                continue;
            };
            let name = rest.split('"').nth(1);
            if let (Ok(n), Some(name)) = (num.trim().parse::<u32>(), name) {
                reasons.insert(n, name.to_owned());
            }
        }
    }
    Some(KfreeSkbFormat {
        off_skbaddr,
        off_reason,
        off_location,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "name: kfree_skb\nID: 2310\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n\n\
print fmt: \"...\", REC->skbaddr, __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 3, \"NO_SOCKET\" }, { 12, \"NETFILTER_DROP\" })\n";

    /// Linux 5.15's record: no `reason` field.
    #[test]
    fn a_record_without_reason_is_read_with_none() {
        let old = SAMPLE
            .lines()
            .filter(|l| !l.contains(" reason;"))
            .collect::<Vec<_>>()
            .join("\n");
        let f = parse_format(&old).unwrap();
        assert_eq!((f.off_skbaddr, f.off_location), (8, 16));
        assert_eq!(f.off_reason, inspector_common::config::NO_DROP_REASON);
    }

    #[test]
    fn reads_offsets_and_reason_names() {
        let f = parse_format(SAMPLE).unwrap();
        assert_eq!((f.off_skbaddr, f.off_reason, f.off_location), (8, 36, 16));
        assert_eq!(f.reasons.get(&3).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(
            f.reasons.get(&12).map(String::as_str),
            Some("NETFILTER_DROP")
        );
        assert_eq!(f.reasons.len(), 3);
    }
}
