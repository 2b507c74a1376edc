//! A typed call or reply, then its arguments or value, against arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkbridge::fuzz::typed(data));
