//! Network namespaces as the kernel has them: entering one on a thread, running a closure or
//! a program inside one, and named namespaces made and removed the way `ip netns add/del`
//! does it (a new namespace bind-mounted on /var/run/netns/NAME).
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so code that must run inside a
//! namespace runs on a thread of its own; the caller's thread never moves.
use std::{
    fs, io,
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use nix::{
    mount::{MntFlags, MsFlags},
    sched::CloneFlags,
};

/// Where named namespaces (`ip netns add`) are bind-mounted.
pub const NAMED_DIR: &str = "/var/run/netns";

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Moves the calling thread into the namespace `file` refers to.
pub fn enter(file: &fs::File) -> io::Result<()> {
    nix::sched::setns(file, CloneFlags::CLONE_NEWNET).map_err(errno)
}

fn open(path: &Path) -> io::Result<fs::File> {
    fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))
}

/// Runs `f` on a fresh thread that has entered the namespace at `path`, and returns its
/// result. The calling thread never changes namespace.
pub fn run_in<R: Send>(path: &Path, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    let file = open(path)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            enter(&file)?;
            drop(file);
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread inside the network namespace panicked"))?
    })
}

/// Like [`run_in`] but returns at once; `f` runs on its own thread inside the namespace.
pub fn spawn_in<R: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> R + Send + 'static,
) -> io::Result<std::thread::JoinHandle<io::Result<R>>> {
    let file = open(path)?;
    Ok(std::thread::spawn(move || {
        enter(&file)?;
        drop(file);
        Ok(f())
    }))
}

/// A `Command` for `program` that runs in the namespace at `ns` (it enters the namespace
/// between fork and exec).
pub fn command_in(ns: &Path, program: &str) -> io::Result<Command> {
    let file = open(ns)?;
    let mut c = Command::new(program);
    // SAFETY: only setns(2), which is async-signal-safe, runs in the child before exec; the
    // file stays open in the parent until the command has been spawned (the closure owns it).
    unsafe {
        c.pre_exec(move || enter(&file));
    }
    Ok(c)
}

/// The inode of the namespace this thread is in.
pub fn current_inode() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// The inode of a namespace file (a bind mount or a /proc path); `None` when the file is
/// not a namespace (a sandbox file whose bind mount is already gone).
#[must_use]
pub fn inode_of(path: impl AsRef<Path>) -> Option<u64> {
    let path = path.as_ref();
    let st = nix::sys::statfs::statfs(path).ok()?;
    if st.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return None;
    }
    fs::metadata(path).ok().map(|m| m.ino())
}

/// The path of the named namespace `name`.
#[must_use]
pub fn named(name: &str) -> PathBuf {
    PathBuf::from(NAMED_DIR).join(name)
}

/// Makes /var/run/netns a shared mount point, as iproute2 does, so namespaces mounted there
/// are visible in other mount namespaces too.
fn prepare_dir() -> io::Result<()> {
    fs::create_dir_all(NAMED_DIR)?;
    let shared = || {
        nix::mount::mount(
            Some("none"),
            NAMED_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            nix::mount::mount(
                Some(NAMED_DIR),
                NAMED_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(errno)?;
            shared().map_err(errno)
        }
        other => other.map_err(errno),
    }
}

/// Creates the named namespace `name`. Fails if it exists.
pub fn create(name: &str) -> io::Result<PathBuf> {
    prepare_dir()?;
    let p = named(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", p.display())))?;
    let target = p.clone();
    let res = std::thread::spawn(move || -> io::Result<()> {
        // unshare affects only this throwaway thread.
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(errno)?;
        // Bind the thread's new namespace onto the file: it now outlives the thread.
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(errno)
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?;
    if let Err(e) = res {
        let _ = fs::remove_file(&p);
        return Err(io::Error::new(
            e.kind(),
            format!("creating namespace {name}: {e}"),
        ));
    }
    Ok(p)
}

/// Removes the named namespace `name` (its links go with it once nothing else holds it).
/// A missing namespace is not an error.
pub fn delete(name: &str) -> io::Result<()> {
    let p = named(name);
    if !p.exists() {
        return Ok(());
    }
    // MNT_DETACH, so a busy mount still goes.
    let _ = nix::mount::umount2(&p, MntFlags::MNT_DETACH);
    fs::remove_file(&p)
}

/// Names of existing named namespaces that start with `prefix`.
#[must_use]
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    fs::read_dir(NAMED_DIR)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The default gateway of the namespace at `ns` (from its IPv4 routing table), if it has
/// a default route.
#[must_use]
pub fn default_gateway(ns: &Path) -> Option<std::net::Ipv4Addr> {
    let table = run_in(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/route")
    })
    .ok()?
    .ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000"))
            .then(|| u32::from_str_radix(f.get(2)?, 16).ok())
            .flatten()
            .map(|g| std::net::Ipv4Addr::from(g.swap_bytes()))
    })
}
