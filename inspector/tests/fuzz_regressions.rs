//! Every input a fuzzer found (`inspector/fuzz/regressions/TARGET/`) and every seed
//! (`inspector/fuzz/seeds/TARGET/`), run through the same harness the fuzz target runs
//! (`inspector::fuzzing`), on stable, in every test run: a finding stays fixed. Also: each
//! harness has its cargo-fuzz target, and each kept input names a real target.
use std::path::Path;

use inspector::fuzzing::TARGETS;

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
}

#[test]
fn every_kept_input_runs_through_its_harness_without_a_panic() {
    let mut ran = 0;
    for kind in ["regressions", "seeds"] {
        let Ok(dirs) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let Some((_, harness)) = TARGETS.iter().find(|(t, _)| *t == name) else {
                panic!("{kind}/{name}: no fuzz target of that name");
            };
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                let data = std::fs::read(f.path()).unwrap();
                harness(&data);
                ran += 1;
            }
        }
    }
    assert!(ran >= 20, "only {ran} kept inputs");
}

#[test]
fn every_harness_has_its_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (t, _) in TARGETS {
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{t}.rs")))
            .unwrap_or_else(|e| panic!("fuzz_targets/{t}.rs: {e}"));
        assert!(src.contains(&format!("inspector::fuzzing::{t}(")), "{t}");
        assert!(
            manifest.contains(&format!("name = \"{t}\"")),
            "{t} not in Cargo.toml"
        );
    }
    let xtask =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/src/fuzz.rs"))
            .unwrap();
    for (t, _) in TARGETS {
        assert!(
            xtask.contains(&format!("\"{t}\",")),
            "{t} missing from xtask's list"
        );
    }
}

/// The findings kept did crash the code before their fixes: each would panic or abort on
/// allocation (checked here by what they contain, since the old code is gone).
#[test]
fn the_regressions_are_the_inputs_that_crashed() {
    let r =
        |t: &str, f: &str| std::fs::read(fuzz_dir().join(format!("regressions/{t}/{f}"))).unwrap();
    // A chunk size of usize::MAX: `size + 2` overflowed.
    assert!(
        String::from_utf8_lossy(&r("docker_client", "chunk-size-overflow"))
            .contains("\r\nffffffffffffffff\r\n")
    );
    // An NLMSG_ERROR without room for its errno: read past the datagram.
    let e = r("conntrack_netlink", "short-error");
    assert_eq!((e.len(), u16::from_ne_bytes([e[4], e[5]])), (16, 2));
    let mut out = Vec::new();
    assert!(inspector::net::nl::replies(&e, &mut out).is_some_and(|r| r.is_err()));
    // A body length of 90 TB: an error now, not an allocation.
    let body = r("docker_client", "huge-content-length");
    let got = inspector::identity::docker::read_response(&mut std::io::Cursor::new(body));
    assert!(got.is_err());
}
