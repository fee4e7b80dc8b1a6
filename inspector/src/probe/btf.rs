//! Kernel struct offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).
//!
//! Rust eBPF programs get no CO-RE relocations, so the few kernel fields the programs read
//! (the namespace of the device a packet is on) are located here at start-up and handed to the
//! programs as load-time constants. A small reader of the BTF type section: enough to find a
//! member of a struct by name, looking through anonymous structs/unions and typedefs.
use std::{collections::HashMap, path::Path};

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_ENUM64: u32 = 19;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a BTF blob")]
    Format(String),
    #[error("kernel BTF has no member {0}")]
    Missing(String),
}

struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

struct Type {
    name: u32,
    kind: u32,
    /// For modifiers and typedefs: the referenced type.
    ty: u32,
    members: Vec<Member>,
    /// For enums: (name, value) of each enumerator.
    enumerators: Vec<(u32, u64)>,
}

/// Parsed BTF types and strings.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

impl Btf {
    pub fn load(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data).ok_or_else(|| BtfError::Format(path.display().to_string()))
    }

    /// Parses a BTF blob (`/sys/kernel/btf/vmlinux`); None when it is not one.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.get(0..2)? != [0x9f, 0xeb] {
            return None;
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = hdr_len + u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = hdr_len + u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let strings = b.get(str_off..str_off + str_len)?.to_vec();
        let tb = b.get(type_off..type_off + type_len)?;
        // Type id 0 is "void"; real ids start at 1.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            ty: 0,
            members: Vec::new(),
            enumerators: Vec::new(),
        }];
        let mut off = 0;
        while off + 12 <= tb.len() {
            let name = u32_at(tb, off)?;
            let info = u32_at(tb, off + 4)?;
            let size_or_type = u32_at(tb, off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kflag = info >> 31 == 1;
            let mut members = Vec::new();
            let mut enumerators = Vec::new();
            let extra = match kind {
                KIND_ENUM => {
                    for i in 0..vlen {
                        let m = off + i * 8;
                        enumerators.push((u32_at(tb, m)?, u64::from(u32_at(tb, m + 4)?)));
                    }
                    vlen * 8
                }
                KIND_ENUM64 => {
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let v = u64::from(u32_at(tb, m + 4)?) | u64::from(u32_at(tb, m + 8)?) << 32;
                        enumerators.push((u32_at(tb, m)?, v));
                    }
                    vlen * 12
                }
                1 | 14 | 17 => 4,
                3 => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let raw = u32_at(tb, m + 8)?;
                        members.push(Member {
                            name: u32_at(tb, m)?,
                            ty: u32_at(tb, m + 4)?,
                            bit_offset: if kflag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    vlen * 12
                }
                13 => vlen * 8,
                15 => vlen * 12,
                _ => 0,
            };
            off += extra;
            types.push(Type {
                name,
                kind,
                ty: size_or_type,
                members,
                enumerators,
            });
        }
        let mut btf = Self {
            types,
            strings,
            by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if matches!(
                t.kind,
                KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_TYPEDEF
            ) && t.name != 0
            {
                let n = btf.str_at(t.name).to_owned();
                btf.by_name.entry(n).or_default().push(id as u32);
            }
        }
        Some(btf)
    }

    /// The enumerators of `enum name`: value -> name.
    #[must_use]
    pub fn enum_values(&self, name: &str) -> Option<std::collections::BTreeMap<u64, String>> {
        let id = self
            .by_name
            .get(name)?
            .iter()
            .find(|id| matches!(self.types[**id as usize].kind, KIND_ENUM | KIND_ENUM64))?;
        Some(
            self.types[*id as usize]
                .enumerators
                .iter()
                .map(|(n, v)| (*v, self.str_at(*n).to_owned()))
                .collect(),
        )
    }

    /// Whether a struct, union, enum or typedef of this name exists (`btf_trace_<tp>` is
    /// the typedef of a BTF-enabled tracepoint).
    #[must_use]
    pub fn has_type(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn str_at(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|c| *c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.ty;
                }
                _ => break,
            }
        }
        id
    }

    /// Bit offset and type of `member` in struct/union `id`, searching anonymous members.
    fn find(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        let t = self.types.get(self.resolve(id) as usize)?;
        if depth > 8 || !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in &t.members {
            if m.name != 0 && self.str_at(m.name) == member {
                return Some((m.bit_offset, m.ty));
            }
        }
        for m in t.members.iter().filter(|m| m.name == 0) {
            if let Some((off, ty)) = self.find(m.ty, member, depth + 1) {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of a dotted member path in a named struct, e.g. ("net", "ns.inum").
    pub fn offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let bits = self.bit_offset(strukt, path)?;
        if bits % 8 != 0 {
            return Err(BtfError::Missing(format!("{strukt}.{path}")));
        }
        Ok(bits / 8)
    }

    /// Bit offset of a member path (a bit field's too).
    pub fn bit_offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing(format!("{strukt}.{path}"));
        let mut ids = self.by_name.get(strukt).ok_or_else(missing)?.iter();
        // Prefer the definition that has members (not a forward declaration).
        let mut id = *ids
            .find(|i| !self.types[**i as usize].members.is_empty())
            .ok_or_else(missing)?;
        let mut bits = 0;
        for part in path.split('.') {
            let (off, ty) = self.find(id, part, 0).ok_or_else(missing)?;
            bits += off;
            id = ty;
        }
        Ok(bits)
    }
}

/// Kernel struct offsets the programs need: the namespace of a packet's device
/// (`skb->dev->nd_net.net->ns.inum`), and for the drop tracepoint the device's ifindex and
/// where the packet's bytes are (`head`, `network_header`, `tail`, `len`, `protocol`).
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    pub skb_dev: u32,
    pub dev_net: u32,
    pub net_inum: u32,
    pub dev_ifindex: u32,
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_nh: u32,
    pub skb_mac: u32,
    pub skb_tail: u32,
    pub skb_len: u32,
    pub skb_proto: u32,
    pub skb_mark: u32,
    pub skb_sk: u32,
    pub sk_net: u32,
    /// `sk_buff.vlan_proto` (`vlan_tci` follows), and the bit offset of `vlan_present`
    /// (`NO_VLAN_PRESENT` on 6.2+, which dropped it).
    pub skb_vlan: u32,
    pub skb_vlan_present: u32,
}

pub fn kernel_offsets(path: &Path) -> Result<KernelOffsets, BtfError> {
    let btf = Btf::load(path)?;
    Ok(KernelOffsets {
        skb_dev: btf.offset("sk_buff", "dev")?,
        dev_net: btf.offset("net_device", "nd_net.net")?,
        net_inum: btf.offset("net", "ns.inum")?,
        dev_ifindex: btf.offset("net_device", "ifindex")?,
        skb_head: btf.offset("sk_buff", "head")?,
        skb_data: btf.offset("sk_buff", "data")?,
        skb_nh: btf.offset("sk_buff", "network_header")?,
        skb_mac: btf.offset("sk_buff", "mac_header")?,
        skb_tail: btf.offset("sk_buff", "tail")?,
        skb_len: btf.offset("sk_buff", "len")?,
        skb_proto: btf.offset("sk_buff", "protocol")?,
        skb_mark: btf.offset("sk_buff", "mark")?,
        skb_sk: btf.offset("sk_buff", "sk")?,
        sk_net: btf.offset("sock", "__sk_common.skc_net.net")?,
        skb_vlan: btf.offset("sk_buff", "vlan_proto")?,
        skb_vlan_present: btf
            .bit_offset("sk_buff", "vlan_present")
            .unwrap_or(inspector_common::config::NO_VLAN_PRESENT),
    })
}

/// Names of `enum skb_drop_reason` in the running kernel's BTF, without the
/// `SKB_DROP_REASON_` prefix ("`NO_SOCKET`").
///
/// # Errors
/// No readable BTF, or no such enum in it.
pub fn drop_reasons(path: &Path) -> Result<std::collections::BTreeMap<u32, String>, BtfError> {
    let btf = Btf::load(path)?;
    let values = btf
        .enum_values("skb_drop_reason")
        .ok_or_else(|| BtfError::Missing("enum skb_drop_reason".into()))?;
    Ok(values
        .into_iter()
        .filter_map(|(v, n)| {
            Some((
                u32::try_from(v).ok()?,
                n.strip_prefix("SKB_DROP_REASON_").unwrap_or(&n).to_owned(),
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's enum, checked against the tracepoint's own symbol table (an
    /// independent source: the format file's `__print_symbolic`).
    #[test]
    fn drop_reason_names_from_btf_match_the_tracepoint_format() {
        let btf = Path::new("/sys/kernel/btf/vmlinux");
        if !btf.exists() {
            return;
        }
        let names = drop_reasons(btf).expect("enum skb_drop_reason in BTF");
        assert_eq!(names.get(&2).map(String::as_str), Some("NOT_SPECIFIED"));
        assert!(names.values().any(|n| n == "NETFILTER_DROP"));
        assert!(names.values().any(|n| n == "NO_SOCKET"));
        if let Ok(tf) = crate::probe::tracefs::ensure_mounted()
            && let Ok(fmt) = crate::probe::tracefs::kfree_skb_format(&tf)
        {
            for (v, n) in &fmt.reasons {
                assert_eq!(names.get(v), Some(n), "reason {v}");
            }
        }
    }

    /// Against the running kernel's BTF when there is one: the offsets must be the ones the
    /// kernel's own UAPI-stable layout implies where there is such a layout (`sk_buff.next` at
    /// 0 puts dev at 16 on 64-bit), and all distinct.
    #[test]
    fn running_kernel_offsets_are_plausible() {
        let p = Path::new("/sys/kernel/btf/vmlinux");
        if !p.exists() {
            return;
        }
        let o = kernel_offsets(p).expect("offsets from running kernel BTF");
        assert_eq!(o.skb_dev, 16, "sk_buff.dev follows next/prev");
        let skb = [
            o.skb_dev,
            o.skb_head,
            o.skb_data,
            o.skb_nh,
            o.skb_mac,
            o.skb_tail,
            o.skb_len,
            o.skb_proto,
            o.skb_mark,
        ];
        let mut sorted = skb.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), skb.len(), "distinct sk_buff fields: {o:?}");
        assert!(o.dev_net > 0 && o.dev_ifindex > 0 && o.net_inum > 0);
    }

    /// One type of `bpftool btf dump ... format raw`.
    #[derive(Default)]
    struct RawType {
        kind: String,
        name: String,
        /// The type a typedef/const/volatile refers to.
        target: u32,
        /// (name, type, bit offset).
        members: Vec<(String, u32, u32)>,
    }

    type RawTypes = std::collections::HashMap<u32, RawType>;

    fn raw_types(text: &str) -> RawTypes {
        let field = |l: &str, k: &str| -> Option<u32> {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.parse().ok())
        };
        let mut types = RawTypes::new();
        let mut cur = 0u32;
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix('[') {
                let Some((id, rest)) = rest.split_once("] ") else {
                    continue;
                };
                cur = id.parse().unwrap_or(0);
                types.insert(
                    cur,
                    RawType {
                        kind: rest.split_whitespace().next().unwrap_or("").to_owned(),
                        name: rest.split('\'').nth(1).unwrap_or("").to_owned(),
                        target: field(l, "type_id=").unwrap_or(0),
                        members: Vec::new(),
                    },
                );
            } else if let Some(m) = l.strip_prefix('\t').filter(|m| m.starts_with('\''))
                && let (Some(t), Some(off)) = (field(m, "type_id="), field(m, "bits_offset="))
                && let Some(ty) = types.get_mut(&cur)
            {
                let name = m.split('\'').nth(1).unwrap_or("").to_owned();
                ty.members.push((name, t, off));
            }
        }
        types
    }

    fn resolve(types: &RawTypes, mut id: u32) -> u32 {
        while let Some(t) = types.get(&id) {
            if !matches!(
                t.kind.as_str(),
                "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG"
            ) {
                break;
            }
            id = t.target;
        }
        id
    }

    /// (bit offset, type) of `name` in struct/union `id`, looking into anonymous members.
    fn find(types: &RawTypes, id: u32, name: &str) -> Option<(u32, u32)> {
        for (n, t, off) in &types.get(&id)?.members {
            if n == name {
                return Some((*off, *t));
            }
            if n == "(anon)"
                && let Some((o, t)) = find(types, resolve(types, *t), name)
            {
                return Some((off + o, t));
            }
        }
        None
    }

    /// Every offset handed to the kernel programs, against `bpftool btf dump ... format raw`
    /// of the running kernel (an independent BTF reader): members found through anonymous
    /// structs and unions and typedefs, offsets summed along the path.
    #[test]
    fn offsets_equal_what_bpftool_reads_from_the_running_kernel() {
        let p = Path::new("/sys/kernel/btf/vmlinux");
        if !p.exists() {
            return;
        }
        let out = std::process::Command::new("bpftool")
            .args([
                "btf",
                "dump",
                "file",
                "/sys/kernel/btf/vmlinux",
                "format",
                "raw",
            ])
            .output()
            .expect("bpftool (installed by `cargo xtask setup`)");
        assert!(out.status.success());
        let types = raw_types(&String::from_utf8_lossy(&out.stdout));
        let offset = |st: &str, path: &str| -> u32 {
            let mut id = types
                .iter()
                .filter(|(_, t)| t.kind == "STRUCT" && t.name == st && !t.members.is_empty())
                .map(|(id, _)| *id)
                .min()
                .unwrap_or_else(|| panic!("struct {st} in bpftool's dump"));
            let mut bits = 0;
            for part in path.split('.') {
                let (o, t) =
                    find(&types, id, part).unwrap_or_else(|| panic!("{st}.{path}: no {part}"));
                bits += o;
                id = resolve(&types, t);
            }
            bits / 8
        };
        let o = kernel_offsets(p).expect("offsets from running kernel BTF");
        for (ours, st, path) in [
            (o.skb_dev, "sk_buff", "dev"),
            (o.dev_net, "net_device", "nd_net.net"),
            (o.net_inum, "net", "ns.inum"),
            (o.dev_ifindex, "net_device", "ifindex"),
            (o.skb_head, "sk_buff", "head"),
            (o.skb_data, "sk_buff", "data"),
            (o.skb_nh, "sk_buff", "network_header"),
            (o.skb_mac, "sk_buff", "mac_header"),
            (o.skb_tail, "sk_buff", "tail"),
            (o.skb_len, "sk_buff", "len"),
            (o.skb_proto, "sk_buff", "protocol"),
            (o.skb_mark, "sk_buff", "mark"),
            (o.skb_sk, "sk_buff", "sk"),
            (o.sk_net, "sock", "__sk_common.skc_net.net"),
        ] {
            assert_eq!(ours, offset(st, path), "{st}.{path}");
        }
    }
}
