//! Fuzzes the identity platform's answers (token, error, device code, claims); see graphbrokerd's `fuzzing` module.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graphbrokerd::fuzzing::idp_answer(data));
