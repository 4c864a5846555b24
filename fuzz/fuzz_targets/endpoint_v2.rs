#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mpgameserver_fuzz::endpoint_v2(data));
