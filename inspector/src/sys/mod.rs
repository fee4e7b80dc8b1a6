//! The operating system, wrapped safely: network namespaces (enter, run in, create, remove),
//! child processes (feeding stdin, stopping), clocks, CPU pinning, privileges, cgroup v2
//! facts, stop signals and cross-thread wake-ups. Everything above uses these instead of raw `libc` calls, so each
//! `unsafe` system call lives here once (through `nix` where it has the call).
//!
//! The bottom layer: it imports nothing of the crate.
pub mod cgroup;
pub mod cpu;
pub mod heap;
pub mod kallsyms;
pub mod netns;
pub mod nudge;
pub mod privilege;
pub mod process;
pub mod signals;
pub mod time;
