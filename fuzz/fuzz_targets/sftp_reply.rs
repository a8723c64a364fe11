#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rscp_fuzz::checks::sftp_reply(data));
