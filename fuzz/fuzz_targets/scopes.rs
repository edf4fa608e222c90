//! Fuzzes scope normalization and its properties (idempotence, order); see graphbrokerd's `fuzzing` module.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graphbrokerd::fuzzing::scopes(data));
