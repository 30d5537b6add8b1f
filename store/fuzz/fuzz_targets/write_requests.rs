//! Client and peer requests, decoded, checked and applied to an in-memory member.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: cairn_testkit::mutate::seed_corpus(&cairn_store::apply::fuzz::seeds()),
    |data: &[u8]| {
        cairn_store::apply::fuzz::write_requests(data);
    }
);
