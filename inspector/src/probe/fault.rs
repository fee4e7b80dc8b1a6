//! Fault injection for the tests of what a kernel without a hook gets (the fallback, the
//! warning or the one-line error), on a kernel that has them all. Nothing else reads it.

/// Tracepoints a test has this kernel lack (`INSPECTOR_FAULT=no-hook:TP[,TP...]`, fault
/// injection): what a kernel without a hook gets - the fallback, the warning or the one-line
/// error - shown on a kernel that has them all. Every check of a hook asks this first.
#[must_use]
pub fn hook_missing(tp: &str) -> bool {
    std::env::var("INSPECTOR_FAULT").is_ok_and(|f| {
        f.strip_prefix("no-hook:")
            .is_some_and(|l| l.split(',').any(|t| t == tp))
    })
}
