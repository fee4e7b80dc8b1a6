//! The image the bench's containers run: a busybox-static rootfs with the shared libraries
//! the inspector binary links against, imported with `docker import` (no registry needed).
//! The binary itself is bind-mounted read-only at run time, so one image serves every build;
//! its tag is a hash of the libraries' paths and sizes. An image imported here is removed
//! again at the end of the run (and one a killed run left, by the next run).
use std::path::{Path, PathBuf};

use super::cli::Cli;
use crate::bench::BenchError;

/// The absolute paths `ldd` lists for `exe` (none for a static binary).
fn libraries(exe: &Path) -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("ldd").arg(exe).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=>").map_or(l, |(_, p)| p.trim());
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// FNV-1a of the libraries' paths and sizes: the image's tag.
fn tag(libs: &[PathBuf]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in libs {
        let size = std::fs::metadata(l).map_or(0, |m| m.len());
        for b in l
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .chain(&size.to_le_bytes())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("inspector-bench/hold:{:012x}", h & 0xffff_ffff_ffff)
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The image's tag, and whether it was imported now (and so is removed at the end).
pub(super) fn ensure(cli: &Cli, exe: &Path) -> Result<(String, bool), BenchError> {
    let libs = libraries(exe);
    let tag = tag(&libs);
    // An image of ours is labelled with the pid of the run that imported it: one a killed run
    // left (its pid gone) is this run's to remove; one a running bench uses stays.
    let label = format!("{{{{index .Config.Labels \"{}\"}}}}", super::LABEL);
    if let Ok(owner) = cli.run(&["image", "inspect", "-f", &label, &tag]) {
        let alive = owner
            .parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists());
        return Ok((tag, !alive));
    }
    let root =
        Scratch(std::env::temp_dir().join(format!("insp-bench-rootfs-{}", std::process::id())));
    let copy = |from: &Path, to: &Path| -> Result<(), BenchError> {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .map_err(BenchError::io(format!("creating {}", dir.display())))?;
        }
        std::fs::copy(from, to).map_err(BenchError::io(format!("copying {}", from.display())))?;
        Ok(())
    };
    for l in &libs {
        copy(l, &root.0.join(l.strip_prefix("/").unwrap_or(l)))?;
    }
    // busybox-static gives the containers a shell for `docker exec` (not needed to run).
    let busybox = Path::new("/bin/busybox");
    if busybox.exists() {
        copy(busybox, &root.0.join("bin/busybox"))?;
        let _ = std::os::unix::fs::symlink("busybox", root.0.join("bin/sh"));
    }
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root.0)
        .args(["-cf", "-", "."])
        .output()
        .map_err(BenchError::io("tar (packing the bench image)"))?;
    if !tar.status.success() {
        return Err(BenchError::Input(format!(
            "tar (packing the bench image): {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    let change = format!("LABEL {}={}", super::LABEL, std::process::id());
    cli.run_with(&["import", "-c", &change, "-", &tag], Some(&tar.stdout))?;
    Ok((tag, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_libraries() {
        let a = tag(&[PathBuf::from("/lib/a.so")]);
        assert_eq!(a, tag(&[PathBuf::from("/lib/a.so")]));
        assert_ne!(a, tag(&[PathBuf::from("/lib/b.so")]));
        assert!(a.starts_with("inspector-bench/hold:"));
    }
}
