#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mpgameserver_fuzz::endpoint(data, mpgameserver::Role::Server));
