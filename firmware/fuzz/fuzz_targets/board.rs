#![no_main]
// See firmware/fuzz/Cargo.toml and leukoscope::testing::fuzz::board.
libfuzzer_sys::fuzz_target!(|data: &[u8]| leukoscope::testing::fuzz::board(data));
