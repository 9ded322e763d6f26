//! cargo fuzz target: one request frame (no size prefix) through `gregor::api::handle` on a live
//! in-process broker with a real ZooKeeper; see `gregor_fuzz::request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        gregor_fuzz::seeds::write_if_asked("request_path");
        gregor_fuzz::request::init();
    },
    |data: &[u8]| gregor_fuzz::request::run(data)
);
