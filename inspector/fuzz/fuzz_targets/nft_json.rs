#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| inspector::fuzzing::nft_json(data));
