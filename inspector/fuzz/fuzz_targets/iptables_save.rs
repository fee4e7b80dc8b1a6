#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inspector::fuzzing::iptables_save(data));
