//! Kernel addresses to function names (/proc/kallsyms), for the call site where the kernel
//! freed a dropped packet (`location` of `skb:kfree_skb`): "`nf_hook_slow+0x9a`".
use std::sync::OnceLock;

/// Text symbols sorted by address.
pub struct Kallsyms(Vec<(u64, String)>);

impl Kallsyms {
    /// Parses /proc/kallsyms text; None when addresses are hidden (all zero: `kptr_restrict`
    /// without the privilege to see them).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_owned()))
            })
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable_by_key(|(a, _)| *a);
        Some(Self(v))
    }

    /// "name+0xoff" of the function containing `addr`.
    #[must_use]
    pub fn name(&self, addr: u64) -> Option<String> {
        let i = self.0.partition_point(|(a, _)| *a <= addr).checked_sub(1)?;
        let (start, name) = &self.0[i];
        Some(format!("{name}+{:#x}", addr - start))
    }
}

/// The running kernel's symbols, read once.
fn kernel() -> Option<&'static Kallsyms> {
    static K: OnceLock<Option<Kallsyms>> = OnceLock::new();
    K.get_or_init(|| {
        std::fs::read_to_string("/proc/kallsyms")
            .ok()
            .and_then(|t| Kallsyms::parse(&t))
    })
    .as_ref()
}

/// The function a kernel address belongs to ("" when unknown or hidden).
#[must_use]
pub fn location(addr: u64) -> String {
    if addr == 0 {
        return String::new();
    }
    kernel().and_then(|k| k.name(addr)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_containing_function() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t nf_hook_slow\nffffffff81000200 D some_data\nffffffff81000300 T tcp_v4_rcv\n",
        )
        .unwrap();
        assert_eq!(
            k.name(0xffff_ffff_8100_019a).as_deref(),
            Some("nf_hook_slow+0x9a")
        );
        assert_eq!(
            k.name(0xffff_ffff_8100_0300).as_deref(),
            Some("tcp_v4_rcv+0x0")
        );
        assert_eq!(k.name(0x10), None);
        assert!(Kallsyms::parse("0000000000000000 T _stext\n").is_none());
    }

    /// Against the running kernel: the tracepoint's own function resolves to itself.
    #[test]
    fn running_kernel_symbols_resolve() {
        let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
            return;
        };
        let Some(k) = Kallsyms::parse(&text) else {
            return;
        };
        let line = text
            .lines()
            .find(|l| l.ends_with(" nf_hook_slow"))
            .expect("nf_hook_slow in kallsyms");
        let addr = u64::from_str_radix(line.split(' ').next().unwrap(), 16).unwrap();
        assert_eq!(k.name(addr + 4).as_deref(), Some("nf_hook_slow+0x4"));
    }
}
