//! Fuzzes the config file parser (TOML text to resolved profiles); see graphbrokerd's `fuzzing` module.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graphbrokerd::fuzzing::config(data));
