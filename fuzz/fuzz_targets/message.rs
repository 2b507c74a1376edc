//! A message body (postcard) against arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkbridge::fuzz::message(data));
