#![no_main]
// See firmware/fuzz/Cargo.toml and leukoscope::testing::fuzz::card.
libfuzzer_sys::fuzz_target!(|data: &[u8]| leukoscope::testing::fuzz::card(data));
