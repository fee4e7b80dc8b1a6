//! Types shared by the kernel programs (inspector-ebpf) and userspace (inspector), and the
//! packet parser both sides run. This crate is the single source of truth for every struct
//! that crosses the kernel/user boundary; nothing here may be redefined elsewhere.
#![no_std]

pub mod config;
pub mod flow;
pub mod hop;
pub mod parse;
pub mod pcap;
pub mod wsel;

pub use flow::{
    ClockSample, Direction, DropKey, FlowKey, FlowKey4, FlowStats, PacketEvent, SockKey, Stat,
};
