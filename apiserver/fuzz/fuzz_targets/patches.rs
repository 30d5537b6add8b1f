//! JSON, merge, strategic merge and apply patches on an object, decided as an update.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: cairn_testkit::mutate::seed_corpus(&cairn_kube::registry::fuzz::patch_seeds()),
    |data: &[u8]| {
        cairn_kube::registry::fuzz::patches(data);
    }
);
