#![no_main]
// See firmware/fuzz/Cargo.toml and leukoscope::testing::fuzz::journal.
libfuzzer_sys::fuzz_target!(|data: &[u8]| leukoscope::testing::fuzz::journal(data));
