#![no_main]
// See firmware/fuzz/Cargo.toml and leukoscope::testing::fuzz::image.
libfuzzer_sys::fuzz_target!(|data: &[u8]| leukoscope::testing::fuzz::image(data));
