//! Fuzzes the socket API's query parser (GET /v1/token and friends); see graphbrokerd's `fuzzing` module.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graphbrokerd::fuzzing::query(data));
