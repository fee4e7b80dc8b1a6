//! The load-time configuration global. Userspace sets it with `EbpfLoader::set_global` before
//! load; it lands in `.rodata`, which is frozen, so the verifier treats every field as a
//! constant and prunes disabled branches (no per-packet cost for features that are off).
use inspector_common::config::Config;

#[unsafe(no_mangle)]
pub(crate) static INSPECTOR_CONFIG: Config = Config::zeroed();

/// Reads one field of the configuration without letting the compiler fold it to the default.
macro_rules! conf {
    ($field:ident) => {
        // SAFETY: the global is plain data that is never written after load.
        unsafe { core::ptr::read_volatile(&raw const crate::config::INSPECTOR_CONFIG.$field) }
    };
}
pub(crate) use conf;

/// The whole configuration, for the (rare) per-event filter checks.
#[inline(always)]
pub(crate) fn get() -> &'static Config {
    &INSPECTOR_CONFIG
}
