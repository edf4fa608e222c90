//! Fuzzes the Graph proxy's path check and WWW-Authenticate parser; see graphbrokerd's `fuzzing` module.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graphbrokerd::fuzzing::graph_proxy(data));
