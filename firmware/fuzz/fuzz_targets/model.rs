#![no_main]
// See firmware/fuzz/Cargo.toml and leukoscope::testing::fuzz::model.
libfuzzer_sys::fuzz_target!(|data: &[u8]| leukoscope::testing::fuzz::model(data));
