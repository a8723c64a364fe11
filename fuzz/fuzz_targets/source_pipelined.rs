#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rscp_fuzz::checks::source_pipelined(data));
