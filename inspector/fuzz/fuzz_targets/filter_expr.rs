#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inspector::fuzzing::filter_expr(data));
