//! The stream decoder against arbitrary bytes at arbitrary read sizes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkbridge::fuzz::frames(data));
