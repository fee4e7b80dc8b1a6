//! Builds the kernel programs (inspector-ebpf) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, and leaves the object in `OUT_DIR` for `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs; the error below says so if it is missing.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest).join("../inspector-ebpf");
    let ebpf_dir = ebpf_dir.canonicalize()?;
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    println!("cargo:rerun-if-changed={manifest}/../inspector-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "inspector-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "building the eBPF programs failed ({e:#}); run `cargo xtask setup` \
             (needs bpf-linker built against LLVM 22 and nightly rust-src)"
        )
    })
}
