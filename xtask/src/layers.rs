//! `cargo xtask layers`: the layering of the inspector crate, checked from its source. Every
//! top-level module has a rank along the data flow (kernel -> probe -> flows ->
//! identity/services -> session -> output -> cli); a module may import modules of its own
//! rank or below, never above, and the modules (and, inside each, sibling files) import
//! each other in no circle. Imports are read as text: every `crate::a::b` path and every
//! `super::` path, resolved to the module file it names.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// The layers, bottom first. A module missing here is an error (new modules get a rank).
pub const LAYERS: &[(&str, u8)] = &[
    ("sys", 0),
    ("net", 0),
    ("topology", 1),
    ("traffic", 1),
    ("probe", 2),
    ("flows", 3),
    ("identity", 4),
    ("services", 4),
    ("session", 5),
    ("explain", 5),
    ("lab", 6),
    ("bench", 7),
    ("output", 8),
    ("agent", 9),
    ("cli", 9),
    ("fuzzing", 9),
];

/// One source file: its module path (`session::path::report`) and its text.
pub struct Source {
    pub module: Vec<String>,
    pub text: String,
}

/// Reads every `.rs` file under `src` (a crate's src/), as modules.
pub fn read_tree(src: &Path) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src)?.to_path_buf();
                if let Some(module) = module_of(&rel) {
                    out.push(Source {
                        module,
                        text: std::fs::read_to_string(&p)?,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `session/path/mod.rs` -> [session, path]; lib.rs and main.rs are not modules of a layer.
fn module_of(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return None;
    }
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

/// Comments and string literals blanked (an import inside a doc comment is not one).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.trim_start();
            if l.starts_with("//") {
                return String::new();
            }
            let mut out = String::new();
            let mut in_str = false;
            let mut prev = ' ';
            for c in l.chars() {
                if c == '"' && prev != '\\' {
                    in_str = !in_str;
                } else if !in_str {
                    out.push(c);
                }
                prev = c;
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths of a use tree starting at `s` (after `crate::` or `super::`): `a::b`,
/// `a::{b, c::{d, e}}`, ... each as its segments; what follows the tree is ignored.
fn use_tree(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == '{' {
                *i += 1;
                loop {
                    tree(s, i, &path, out);
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_alphanumeric() || s[*i] == '_') {
                *i += 1;
            }
            if *i == start {
                out.push(path);
                return;
            }
            path.push(s[start..*i].iter().collect());
            if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
                *i += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }
    let chars: Vec<char> = s.chars().take(4096).collect();
    let mut out = Vec::new();
    let mut i = 0;
    tree(&chars, &mut i, &[], &mut out);
    out
}

/// Every path after `crate::` or a run of `super::` in `text`, from `module`, made absolute
/// (a list of segments).
fn imports(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code = code_only(text);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = if i == 0 { b' ' } else { bytes[i - 1] };
        if before.is_ascii_alphanumeric() || before == b'_' {
            continue;
        }
        out.extend(use_tree(&code[i + 7..]));
    }
    let mut i = 0;
    while let Some(j) = code[i..].find("super::") {
        let at = i + j;
        let before = if at == 0 { b' ' } else { bytes[at - 1] };
        let mut k = at;
        let mut ups = 0;
        while code[k..].starts_with("super::") {
            ups += 1;
            k += 7;
        }
        i = k;
        if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
            continue;
        }
        // In `a/b/mod.rs` (module [a, b]) and `a/b.rs` alike, `super` is [a].
        let Some(base) = module.len().checked_sub(ups) else {
            continue;
        };
        for p in use_tree(&code[k..]) {
            let mut abs: Vec<String> = module[..base].to_vec();
            abs.extend(p);
            out.push(abs);
        }
    }
    out
}

/// The longest module of `known` that `path` starts with.
fn resolve<'a>(path: &[String], known: &'a BTreeSet<Vec<String>>) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|n| known.get(&path[..n].to_vec()))
}

fn rank(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, r)| *r)
}

/// A circle in `edges`, if there is one (depth-first search).
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n.as_str()) {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Every violation in `tree`, one line each.
#[must_use]
pub fn violations(tree: &[Source]) -> Vec<String> {
    let known: BTreeSet<Vec<String>> = tree.iter().map(|s| s.module.clone()).collect();
    let mut out = Vec::new();
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in tree {
        let from = &s.module;
        let Some(top) = from.first() else { continue };
        let Some(r) = rank(top) else {
            out.push(format!(
                "module {top} has no layer: give it a rank in xtask's LAYERS"
            ));
            continue;
        };
        tops.entry(top.clone()).or_default();
        for imp in imports(from, &s.text) {
            let Some(to) = resolve(&imp, &known) else {
                continue;
            };
            let to_top = &to[0];
            if to_top != top {
                match rank(to_top) {
                    Some(tr) if tr > r => out.push(format!(
                        "{} (layer {r}) imports {} (layer {tr}), a layer above it",
                        from.join("::"),
                        to.join("::")
                    )),
                    _ => {}
                }
                tops.entry(top.clone()).or_default().insert(to_top.clone());
            }
            // Sibling files: neither contains the other.
            let related = to.starts_with(from) || from.starts_with(to);
            if !related {
                siblings
                    .entry(from.join("::"))
                    .or_default()
                    .insert(to.join("::"));
            }
        }
    }
    if let Some(c) = circle(&tops) {
        out.push(format!(
            "modules import each other in a circle: {}",
            c.join(" -> ")
        ));
    }
    // Circles between files under different parents are the modules' circles (above);
    // these are circles among the files of one module.
    let local: BTreeMap<String, BTreeSet<String>> = siblings
        .into_iter()
        .map(|(f, to)| {
            let top = f.split("::").next().unwrap_or("").to_owned();
            let to = to
                .into_iter()
                .filter(|t| t.split("::").next() == Some(top.as_str()))
                .collect();
            (f, to)
        })
        .collect();
    if let Some(c) = circle(&local) {
        out.push(format!(
            "files import each other in a circle: {}",
            c.join(" -> ")
        ));
    }
    out
}

/// Checks the inspector crate; fails listing every violation.
pub fn run() -> anyhow::Result<()> {
    let src = PathBuf::from("inspector/src");
    let v = violations(&read_tree(&src)?);
    if v.is_empty() {
        println!(
            "layers: ok ({} modules in {} layers, no import upward, no circle)",
            LAYERS.len(),
            LAYERS.iter().map(|(_, r)| r).collect::<BTreeSet<_>>().len()
        );
        return Ok(());
    }
    for l in &v {
        eprintln!("layers: {l}");
    }
    bail!("{} layering violation(s) in inspector/src", v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &str, text: &str) -> Source {
        Source {
            module: module_of(Path::new(path)).unwrap(),
            text: text.into(),
        }
    }

    #[test]
    fn an_import_upward_is_named() {
        let v = violations(&[
            src("probe/mod.rs", "use crate::flows::FlowRecord;\n"),
            src("flows/mod.rs", "use crate::probe::Counts;\n"),
        ]);
        assert!(
            v.iter()
                .any(|l| l.contains("probe (layer 2) imports flows (layer 3)")),
            "{v:?}"
        );
        assert!(v.iter().any(|l| l.contains("circle")), "{v:?}");
    }

    #[test]
    fn downward_imports_comments_and_strings_are_fine() {
        let v = violations(&[
            src(
                "probe/mod.rs",
                "//! see crate::cli\nlet s = \"crate::cli\";\n",
            ),
            src("flows/mod.rs", "use crate::probe::Counts;\n"),
            src("cli/mod.rs", "use crate::{flows::X, probe::Y};\n"),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn sibling_files_in_a_circle_are_named_and_super_paths_resolve() {
        let v = violations(&[
            src("cli/mod.rs", "mod flows; mod trace;\n"),
            src("cli/flows.rs", "use super::trace::record;\n"),
            src("cli/trace.rs", "use super::flows::print;\n"),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("cli::flows -> cli::trace -> cli::flows"),
            "{v:?}"
        );
        // A child using its parent's items (and the parent re-exporting the child) is not
        // a circle.
        let ok = violations(&[
            src(
                "session/mod.rs",
                "pub use trace::Tracer; pub struct Session;\n",
            ),
            src("session/trace.rs", "use super::Session;\n"),
        ]);
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn use_trees_with_braces_are_followed() {
        let t = use_tree("{a::{b, c::d}, e} rest");
        let got: Vec<String> = t.iter().map(|p| p.join("::")).collect();
        assert_eq!(got, ["a::b", "a::c::d", "e"]);
        let v = violations(&[
            src("probe/mod.rs", "mod a; mod b;\n"),
            src("probe/a.rs", "use super::{X, b::{f, g}};\n"),
            src("probe/b.rs", "use super::{a, Y};\nfn h() { a::x(); }\n"),
        ]);
        assert!(
            v.iter().any(|l| l.contains("probe::a -> probe::b")),
            "{v:?}"
        );
    }

    #[test]
    fn a_module_without_a_layer_is_named() {
        let v = violations(&[src("capture/mod.rs", "")]);
        assert!(v[0].contains("module capture has no layer"), "{v:?}");
    }

    /// The real tree: what `cargo xtask test` also checks before running the tests.
    #[test]
    fn the_inspector_crate_is_layered() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inspector/src");
        let v = violations(&read_tree(&src).unwrap());
        assert!(v.is_empty(), "{}", v.join("\n"));
    }
}
