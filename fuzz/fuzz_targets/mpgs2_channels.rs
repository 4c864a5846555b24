#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mpgameserver_fuzz::mpgs2_channels(data));
