//! Reading a whole per-CPU map (hash or array) in a few syscalls (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+)
//! instead of two per entry (`get_next_key` + lookup, what aya's iterator does). Hand-written
//! because aya 0.14 does not expose the batch commands; the attribute layout is the kernel's
//! `union bpf_attr` `batch` member. Callers fall back to aya's iterator when the kernel
//! refuses (`EINVAL`/`ENOTSUPP` on old kernels).
use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::Map;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked per call; a bucket holding more than this is `ENOSPC` (the call is retried
/// with room for more).
const CHUNK: usize = 4096;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A `T` from `buf` at byte `at` (checked to be within it).
fn read<T: aya::Pod>(buf: &[u8], at: usize) -> T {
    let size = std::mem::size_of::<T>();
    assert!(at + size <= buf.len(), "batch buffer overrun");
    // SAFETY: `T` is plain old data (any bytes are a valid `T`) and the bytes are in bounds;
    // the read is unaligned.
    unsafe { buf.as_ptr().add(at).cast::<T>().read_unaligned() }
}

/// The map's descriptor, if it is a per-CPU hash map (plain or LRU) or a per-CPU array.
fn fd(map: &Map) -> Option<i32> {
    match map {
        Map::PerCpuHashMap(d) | Map::PerCpuLruHashMap(d) | Map::PerCpuArray(d) => {
            Some(d.fd().as_fd().as_raw_fd())
        }
        _ => None,
    }
}

/// Calls `each` with every key of a per-CPU map of `K` -> `V` (hash, or array with `u32`
/// keys) and its value on every possible CPU, read in batches. `Ok(false)`: the kernel has no batch lookup for this map
/// (nothing was read; the caller iterates instead).
///
/// # Errors
/// The map is no per-CPU hash map or array, or the kernel failed otherwise.
pub fn per_cpu<K: aya::Pod, V: aya::Pod>(
    map: &Map,
    cpus: usize,
    mut each: impl FnMut(K, &[V]),
) -> io::Result<bool> {
    let fd = fd(map).ok_or_else(|| io::Error::other("not a per-CPU map"))?;
    let vsize = std::mem::size_of::<V>().next_multiple_of(8);
    let ksize = std::mem::size_of::<K>();
    let mut chunk = CHUNK;
    let mut per_cpu: Vec<V> = Vec::with_capacity(cpus);
    let mut read_any = false;
    let mut token: u32 = 0;
    let mut first = true;
    // One pair of buffers for the whole read (grown on ENOSPC), not a pair per batch: a
    // long-running session reads its tables every round.
    let mut keys: Vec<u8> = Vec::new();
    let mut values: Vec<u8> = Vec::new();
    loop {
        keys.resize(chunk * ksize, 0);
        values.resize(chunk * cpus * vsize, 0);
        let mut next: u32 = 0;
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut token) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk).unwrap_or(u32::MAX),
            map_fd: u32::try_from(fd).unwrap_or(u32::MAX),
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers sized for `count` keys and values as the kernel
        // writes them (per-CPU values: `cpus` slots of the value size rounded up to 8).
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (r < 0).then(io::Error::last_os_error);
        match err.as_ref().and_then(io::Error::raw_os_error) {
            None | Some(libc::ENOENT) => {}
            Some(libc::ENOSPC) if chunk < 1 << 20 => {
                chunk *= 4;
                continue;
            }
            Some(libc::EINVAL | libc::ENOTSUP | 524) if first && !read_any => {
                return Ok(false);
            }
            Some(_) => return Err(err.unwrap_or_else(|| io::Error::other("batch lookup"))),
        }
        let n = (attr.count as usize).min(chunk);
        for i in 0..n {
            per_cpu.clear();
            per_cpu.extend((0..cpus).map(|c| read::<V>(&values, (i * cpus + c) * vsize)));
            each(read(&keys, i * ksize), &per_cpu);
            read_any = true;
        }
        if err.is_some() {
            // ENOENT: that was the last batch.
            return Ok(true);
        }
        token = next;
        first = false;
    }
}
