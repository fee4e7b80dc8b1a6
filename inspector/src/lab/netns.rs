//! Named network namespaces, made and removed the way `ip netns add/del` does it: a new
//! namespace (unshare on a throwaway thread) bind-mounted on /var/run/netns/NAME.
use std::{ffi::CString, io, path::PathBuf};

use crate::topology::netns::NAMED_DIR;

#[must_use]
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NAMED_DIR).join(name)
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::other("path contains a NUL byte"))
}

/// mount(2) with optional source and fstype.
fn mount(
    src: Option<&CString>,
    target: &CString,
    fstype: Option<&CString>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let ptr = |c: Option<&CString>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: valid C strings (or null where mount(2) allows it).
    let rc = unsafe {
        libc::mount(
            ptr(src),
            target.as_ptr(),
            ptr(fstype),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes /var/run/netns a shared mount point, as iproute2 does, so namespaces mounted there
/// are visible in other mount namespaces too.
fn prepare_dir() -> io::Result<()> {
    std::fs::create_dir_all(NAMED_DIR)?;
    let dir = cstr(NAMED_DIR)?;
    let none = cstr("none")?;
    match mount(Some(&none), &dir, None, libc::MS_SHARED | libc::MS_REC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            mount(Some(&dir), &dir, Some(&none), libc::MS_BIND | libc::MS_REC)?;
            mount(Some(&none), &dir, None, libc::MS_SHARED | libc::MS_REC)
        }
        other => other,
    }
}

/// Creates the named namespace `name`. Fails if it exists.
pub fn create(name: &str) -> io::Result<PathBuf> {
    prepare_dir()?;
    let p = path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", p.display())))?;
    let target = cstr(&p.to_string_lossy())?;
    let res = std::thread::spawn(move || -> io::Result<()> {
        let src = cstr("/proc/thread-self/ns/net")?;
        let none = cstr("none")?;
        // SAFETY: unshare affects only this throwaway thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Bind the thread's new namespace onto the file: it now outlives the thread.
        mount(Some(&src), &target, Some(&none), libc::MS_BIND)
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?;
    if let Err(e) = res {
        let _ = std::fs::remove_file(&p);
        return Err(io::Error::new(
            e.kind(),
            format!("creating namespace {name}: {e}"),
        ));
    }
    Ok(p)
}

/// Removes the named namespace `name` (its links go with it once nothing else holds it).
/// Missing namespaces are not an error.
pub fn delete(name: &str) -> io::Result<()> {
    let p = path(name);
    if !p.exists() {
        return Ok(());
    }
    let c = cstr(&p.to_string_lossy())?;
    // SAFETY: umount2 on a path we own; MNT_DETACH so a busy mount still goes.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    std::fs::remove_file(&p)
}

/// Names of existing named namespaces that start with `prefix`.
#[must_use]
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir(NAMED_DIR)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A `Command` that runs in the namespace at `ns` (setns between fork and exec).
pub fn command_in(ns: &std::path::Path, program: &str) -> io::Result<std::process::Command> {
    let file = std::fs::File::open(ns)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", ns.display())))?;
    let mut c = std::process::Command::new(program);
    // SAFETY: only setns(2) runs in the child before exec; `file` stays open in the parent
    // until the command has been spawned (it is moved into the closure).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
            if libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(c)
}
