//! cargo fuzz target: one record batch through the produce path's framing check and
//! `Log::append_as_leader` (Kafka's LogValidator) on a real log; see `gregor_fuzz::batch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: gregor_fuzz::seeds::write_if_asked("batch_validator"),
    |data: &[u8]| gregor_fuzz::batch::run(data)
);
